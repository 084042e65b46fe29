import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { inspect, promisify } from 'node:util';
import { LambdaClient } from '@aws-sdk/client-lambda';
import {
  authorizedFetch,
  invokeTransport,
  TokenBrokerClient,
  TokenBrokerError,
  urlTransport,
} from '@limitrail/token-broker-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  CALLER_REGION,
  type CallerStack,
  FUNCTION_NAME,
  type Role,
  startCallerStack,
  UNGRANTED_SCOPE,
} from '../../../test/support/stacks/caller-stack';

/**
 * The Node caller package (@limitrail/token-broker-client, clients/node) against the real local stack: the built
 * broker bundle behind serverless-offline's Lambda Invoke API, moto with signature-checking STS, the LimitRail
 * sandbox. Broker invocations are counted by a proxy in front of the Invoke API, upstream requests at the sandbox.
 * Proofs go to AWS_ENDPOINT_URL_STS (set for this file), by the same rule as the broker's.
 */
let stack: CallerStack;
const lambdas: LambdaClient[] = [];
const tokensSeen = new Set<string>();
const errorsSeen: unknown[] = [];

/** The Invoke API through the counting proxy; serverless-offline checks no signature, the proof says who calls. */
const lambdaClient = () => {
  const lambda = new LambdaClient({
    endpoint: stack.lambdaEndpoint,
    region: CALLER_REGION,
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts: 1,
  });
  lambdas.push(lambda);
  return lambda;
};
const brokerAs = (role: Role, options: { deadlineMs?: number } = {}) =>
  new TokenBrokerClient(
    invokeTransport(FUNCTION_NAME, { lambda: lambdaClient(), credentials: stack.credentials(role) }),
    options,
  );

const remember = (token: string) => {
  tokensSeen.add(token);
  return token;
};
const failureOf = async (promise: Promise<unknown>): Promise<TokenBrokerError> => {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  errorsSeen.push(err);
  expect(err).toBeInstanceOf(TokenBrokerError);
  return err as TokenBrokerError;
};

/** LimitRail's API as far as a bearer token goes: 401 for the tokens it was told to reject, 200 otherwise. */
const startLimitrailApi = async () => {
  const rejected = new Set<string>();
  const seen: string[] = [];
  let rejectAll = false;
  const server: Server = createServer((req, res) => {
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    seen.push(token);
    req.resume();
    const ok = token !== '' && !rejectAll && !rejected.has(token);
    res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
    res.end(JSON.stringify(ok ? { committed: true } : { title: 'Unauthorized', status: 401 }));
  });
  await new Promise<void>((ready) => server.listen(0, '127.0.0.1', ready));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/usage/commit`,
    reject: (token: string) => rejected.add(token),
    rejectEverything: () => {
      rejectAll = true;
    },
    seen,
    stop: () => new Promise<void>((done) => server.close(() => done())),
  };
};

const savedEnv = { ...process.env };
beforeAll(async () => {
  stack = await startCallerStack();
  process.env.AWS_ENDPOINT_URL_STS = stack.sts.endpoint;
}, 90_000);
afterEach(() => {
  for (const key of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE']) {
    if (savedEnv[key] === undefined) delete process.env[key];
    else process.env[key] = savedEnv[key];
  }
});
afterAll(async () => {
  for (const lambda of lambdas) lambda.destroy();
  await stack?.stop();
  process.env.AWS_ENDPOINT_URL_STS = savedEnv.AWS_ENDPOINT_URL_STS;
  if (savedEnv.AWS_ENDPOINT_URL_STS === undefined) delete process.env.AWS_ENDPOINT_URL_STS;
}, 30_000);

describe('TokenBrokerClient over Lambda Invoke', () => {
  it('answers 100 concurrent requests for one key with one broker invocation and one upstream request', async () => {
    const broker = brokerAs('billing');
    const before = { invocations: stack.invocations().total, upstream: stack.upstream(), sts: stack.sts.calls() };
    const tokens = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        broker.token(i % 2 ? ['limitrail.usage.read'] : ['limitrail.usage.read', 'limitrail.usage.read']),
      ),
    );
    expect(new Set(tokens).size).toBe(1);
    expect(remember(tokens[0]!)).toMatch(/^eyJ/);
    expect(stack.invocations().total - before.invocations).toBe(1);
    expect(stack.upstream() - before.upstream).toBe(1);
    // The one invocation carried a proof the broker replayed to STS (which checked its signature).
    expect(stack.sts.calls() - before.sts).toBe(1);
    // From memory afterwards: no invocation.
    expect(await broker.token(['limitrail.usage.read'])).toBe(tokens[0]);
    expect(stack.invocations().total - before.invocations).toBe(1);
  });

  it('signs proofs with the default credential chain, sent to AWS_ENDPOINT_URL_STS', async () => {
    const session = stack.credentials('billing');
    Object.assign(process.env, {
      AWS_ACCESS_KEY_ID: session.accessKeyId,
      AWS_SECRET_ACCESS_KEY: session.secretAccessKey,
      AWS_SESSION_TOKEN: session.sessionToken,
    });
    delete process.env.AWS_PROFILE;
    const broker = new TokenBrokerClient(invokeTransport(FUNCTION_NAME, { lambda: lambdaClient() }));
    // SigV4 is deterministic to the second: a proof signed with these credentials in the same second as an earlier
    // test's is that very proof, which the broker verified already (one STS call per proof). Start a new second.
    await sleep(1005 - (Date.now() % 1000));
    const stsBefore = stack.sts.calls();
    expect(remember(await broker.token(['limitrail.usage.read']))).toMatch(/^eyJ/);
    expect(stack.sts.calls() - stsBefore).toBe(1);
  });

  it('after a 401, authorizedFetch asks for exactly one forced refresh and sends the request again with the new token', async () => {
    const api = await startLimitrailApi();
    try {
      const broker = brokerAs('billing');
      const scopes = ['limitrail.usage.write'];
      const first = remember(await broker.token(scopes));
      api.reject(first);
      const before = { ...stack.invocations(), upstream: stack.upstream() };

      const res = await authorizedFetch(broker, scopes)(api.url, { method: 'POST', body: '{"units":1}' });

      expect(res.status).toBe(200);
      expect(api.seen).toHaveLength(2);
      expect(api.seen[0]).toBe(first);
      expect(remember(api.seen[1]!)).not.toBe(first);
      expect(stack.invocations().forced - before.forced).toBe(1);
      expect(stack.invocations().total - before.total).toBe(1);
      expect(stack.upstream() - before.upstream).toBe(1);
      // The new token is cached: the next call uses it without the broker.
      expect(await broker.token(scopes)).toBe(api.seen[1]);
      expect(stack.invocations().total - before.total).toBe(1);
    } finally {
      await api.stop();
    }
  });

  it('makes one forced refresh for 20 concurrent requests rejected with the same token', async () => {
    const api = await startLimitrailApi();
    try {
      // Another role than the test before's: each caller's forced refreshes fetch once per interval (per client).
      const broker = brokerAs('billing-batch');
      const scopes = ['limitrail.runtime.read', 'limitrail.usage.write'];
      const first = remember(await broker.token(scopes));
      api.reject(first);
      const before = stack.invocations();
      const limitrail = authorizedFetch(broker, scopes);
      const answers = await Promise.all(
        Array.from({ length: 20 }, () => limitrail(api.url, { method: 'POST', body: '{}' })),
      );
      expect(answers.map((r) => r.status)).toEqual(Array(20).fill(200));
      expect(new Set(api.seen.slice(20)).size).toBe(1);
      remember(api.seen[20]!);
      expect(stack.invocations().forced - before.forced).toBe(1);
      expect(stack.invocations().total - before.total).toBe(1);
    } finally {
      await api.stop();
    }
  });

  it('never loops: a second 401 is returned as it is, after one forced refresh', async () => {
    const api = await startLimitrailApi();
    try {
      api.rejectEverything();
      const broker = brokerAs('billing-cron');
      const scopes = ['limitrail.runtime.read', 'limitrail.usage.read'];
      remember(await broker.token(scopes));
      const before = stack.invocations();
      const res = await authorizedFetch(broker, scopes)(api.url, { method: 'POST', body: '{}' });
      expect(res.status).toBe(401);
      expect(api.seen).toHaveLength(2);
      remember(api.seen[1]!);
      expect(stack.invocations().forced - before.forced).toBe(1);
      expect(stack.invocations().total - before.total).toBe(1);
    } finally {
      await api.stop();
    }
  });

  it('retries temporarily_unavailable until the token endpoint comes back', async () => {
    const broker = brokerAs('billing');
    const before = {
      invocations: stack.invocations().total,
      upstream: stack.upstream(),
      issued: stack.broker.sandbox.stats().tokensIssued,
    };
    // More failures than one broker invocation retries (3 attempts): the broker answers 503 at least once.
    stack.broker.sandbox.queueFaults(...Array.from({ length: 4 }, () => ({ status: 503, body: '{"title":"down"}' })));

    const token = remember(await broker.token(['limitrail.runtime.read']));

    expect(token).toMatch(/^eyJ/);
    expect(stack.invocations().total - before.invocations).toBeGreaterThanOrEqual(2);
    expect(stack.upstream() - before.upstream).toBe(5);
    expect(stack.broker.sandbox.stats().tokensIssued - before.issued).toBe(1);
  });

  it('raises a refused grant as access_denied at once, without retrying', async () => {
    const before = stack.invocations().total;
    const nogrant = await failureOf(brokerAs('nogrant').token(['limitrail.usage.read']));
    expect(nogrant).toMatchObject({ error: 'access_denied', status: 403 });
    expect(nogrant.message).toMatch(/^access_denied: /);
    expect(stack.invocations().total - before).toBe(1);

    const notGranted = await failureOf(brokerAs('billing').token([UNGRANTED_SCOPE]));
    expect(notGranted).toMatchObject({ error: 'access_denied', status: 403 });
    expect(stack.invocations().total - before).toBe(2);
  });

  it('raises a Lambda function error as server_error, without retrying', async () => {
    const broker = brokerAs('billing', { deadlineMs: 5_000 });
    const before = stack.invocations().total;
    stack.queueFunctionErrors(1);
    const err = await failureOf(broker.token(['limitrail.usage.write', 'limitrail.usage.read']));
    expect(err).toMatchObject({ error: 'server_error', status: 500 });
    expect(err.description).toContain('Unhandled');
    expect(stack.invocations().total - before).toBe(1);
  });
});

describe('TokenBrokerClient over the Function URL', () => {
  const viaUrl = (role: Role) =>
    new TokenBrokerClient(
      urlTransport(stack.functionUrl, {
        region: CALLER_REGION,
        audience: FUNCTION_NAME,
        credentials: stack.credentials(role),
      }),
    );

  it('gets a token with a SigV4-signed POST whose identity AWS verified matches the proof', async () => {
    const before = stack.invocations();
    expect(remember(await viaUrl('billing').token(['limitrail.usage.read']))).toMatch(/^eyJ/);
    expect(stack.invocations().url - before.url).toBe(1);
  });

  it('raises the refusal of a role without a grant as access_denied', async () => {
    expect(await failureOf(viaUrl('nogrant').token(['limitrail.usage.read']))).toMatchObject({
      error: 'access_denied',
      status: 403,
    });
  });

  it('raises a call AWS refuses (a bad signature) as access_denied', async () => {
    const forged = { ...stack.credentials('billing'), secretAccessKey: 'not-the-secret' };
    const broker = new TokenBrokerClient(
      urlTransport(stack.functionUrl, { region: CALLER_REGION, audience: FUNCTION_NAME, credentials: forged }),
    );
    const err = await failureOf(broker.token(['limitrail.usage.read']));
    expect(err).toMatchObject({ error: 'access_denied', status: 403 });
    expect(err.description).toContain('HTTP 403');
  });
});

describe('what the client and the broker show', () => {
  it('no token, proof signature or credentials in errors, inspected clients or the broker logs', async () => {
    const broker = brokerAs('billing');
    remember(await broker.token(['limitrail.usage.read']));
    const session = stack.credentials('billing');
    const shown = [
      inspect(broker, { depth: 10, showHidden: true }),
      ...errorsSeen.map((e) => `${inspect(e, { depth: 10 })} ${JSON.stringify(e)}`),
      ...stack.logs(),
    ].join('\n');
    expect(tokensSeen.size).toBeGreaterThanOrEqual(6);
    for (const token of tokensSeen) expect(shown).not.toContain(token);
    expect(shown).not.toContain(session.secretAccessKey);
    expect(shown).not.toContain(session.sessionToken);
    expect(shown).not.toMatch(/Signature=[0-9a-f]{64}/);
    // The broker audited the proven principal.
    expect(stack.logs().join('\n')).toContain(stack.sessionArn('billing'));
  });
});

describe('the built package (clients/node/dist)', () => {
  const run = (args: string[]) => promisify(execFile)(process.execPath, args, { cwd: process.cwd() });
  const API =
    'BROKER_ERRORS,PROOF_AUDIENCE_HEADER,TokenBrokerClient,TokenBrokerError,authorizedFetch,invokeTransport,signIdentityProof,stsUrlFor,urlTransport';

  it('loads by its name as an ES module and as CommonJS, with type declarations for both', async () => {
    for (const file of ['esm/index.js', 'esm/index.d.ts', 'cjs/index.js', 'cjs/index.d.ts', 'cjs/package.json']) {
      expect(existsSync(`clients/node/dist/${file}`), `clients/node/dist/${file} (npm run build makes it)`).toBe(true);
    }
    const esm = await run([
      '--input-type=module',
      '-e',
      "import * as m from '@limitrail/token-broker-client'; console.log(Object.keys(m).sort().join(','))",
    ]);
    const cjs = await run([
      '-e',
      "console.log(Object.keys(require('@limitrail/token-broker-client')).sort().join(','))",
    ]);
    expect(esm.stdout.trim()).toBe(API);
    expect(cjs.stdout.trim()).toBe(API);
  });

  it('gets a token from the broker as an ES module and as CommonJS (the built code, not the sources)', async () => {
    const session = stack.credentials('billing');
    const setup = JSON.stringify({
      endpoint: stack.lambdaEndpoint,
      region: CALLER_REGION,
      fn: FUNCTION_NAME,
      credentials: session,
    });
    const body = (load: string) =>
      `${load}; const { LambdaClient } = require('@aws-sdk/client-lambda'); const s = ${setup};` +
      ` const lambda = new LambdaClient({ endpoint: s.endpoint, region: s.region, credentials: { accessKeyId: 'local', secretAccessKey: 'local' }, maxAttempts: 1 });` +
      ` new m.TokenBrokerClient(m.invokeTransport(s.fn, { lambda, credentials: s.credentials })).token(['limitrail.usage.read'])` +
      `.then((t) => { console.log(t.slice(0, 3)); lambda.destroy(); }, (e) => { console.error(e.error, e.status); process.exit(1); });`;
    const env = { ...process.env, AWS_ENDPOINT_URL_STS: stack.sts.endpoint };
    const exec = (args: string[]) => promisify(execFile)(process.execPath, args, { cwd: process.cwd(), env });
    const esm = await exec([
      '--input-type=module',
      '-e',
      `import { createRequire } from 'node:module'; const require = createRequire(process.cwd() + '/'); ${body("const m = await import('@limitrail/token-broker-client')")}`,
    ]);
    const cjs = await exec(['-e', body("const m = require('@limitrail/token-broker-client')")]);
    expect(esm.stdout.trim()).toBe('eyJ');
    expect(cjs.stdout.trim()).toBe('eyJ');
  }, 30_000);
});
