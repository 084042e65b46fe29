import { createHash } from 'node:crypto';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { PutSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RuntimeOverrides } from '../../functions/lib/runtime';
import { setupLocalAws } from '../support/stacks/aws-setup';
import {
  type BrokerStack,
  inProcessContainer,
  REGION,
  SECRET_ID,
  seedToken,
  startBrokerStack,
} from '../support/stacks/broker-stack';
import { startMoto } from '../support/stacks/moto';

/**
 * Failure handling, each fault injected into a real component: the LimitRail sandbox misbehaving on demand,
 * moto_server stopped, a secret rotated in moto while the sandbox accepts old, new or no secret.
 */
const logLines: string[] = [];
const handedOut = new Set<string>();
const secretsSeen = new Set<string>();
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const json = { 'content-type': 'application/json' };
const html = { 'content-type': 'text/html' };

const track = (answer: Record<string, unknown>) => {
  if (typeof answer.access_token === 'string') handedOut.add(answer.access_token);
  return answer;
};

describe('token endpoint faults', () => {
  let stack: BrokerStack;
  const upstream = () => stack.sandbox.stats().tokenRequests;
  const container = (env: Record<string, string> = {}, context = {}) => {
    const invoke = inProcessContainer({ ...stack.env, ...env }, logLines, {}, context);
    return async (event: unknown) => track(await invoke(event));
  };

  beforeAll(async () => {
    stack = await startBrokerStack({ tableName: 'tokens-faults' });
    Object.assign(process.env, stack.env);
    secretsSeen.add(stack.sandbox.clients[0]!.clientSecret);
  });
  afterAll(async () => stack?.stop());

  it('retries a 5xx and answers with the token of the next attempt', async () => {
    stack.sandbox.queueFaults({ status: 502, body: '<html>bad gateway</html>', headers: html });
    const before = upstream();
    const answer = await container()({ scopes: ['limitrail.usage.write'] });
    expect(answer.token_type).toBe('Bearer');
    expect(upstream() - before).toBe(2);
  });

  it('honours Retry-After on 429 before the next attempt', async () => {
    stack.sandbox.queueFaults({
      status: 429,
      body: '{"errorCode":"rate_limited"}',
      headers: { ...json, 'retry-after': '1' },
    });
    const before = upstream();
    const answer = await container()({ scopes: ['limitrail.usage.read'] });
    expect(answer.token_type).toBe('Bearer');
    expect(upstream() - before).toBe(2);
    const retry = logLines
      .map((l) => JSON.parse(l))
      .find((l) => l.message === 'token request failed, retrying' && l.reason === 'upstream_rate_limited');
    expect(retry.delayMs).toBeGreaterThanOrEqual(1000);
  });

  it('never retries another 4xx', async () => {
    const problem = JSON.stringify({
      status: 400,
      errorCode: 'invalid_request',
      resourceKey: 'auth.token.invalid_request',
      traceId: 'abc',
      field: 'scope',
    });
    stack.sandbox.queueFaults({ status: 400, body: problem, headers: json });
    const before = upstream();
    const answer = await container()({ scopes: ['limitrail.accounts.read'] });
    expect(answer).toMatchObject({ error: 'server_error', status: 502 });
    expect(answer.error_description).toContain(
      '(invalid_request, HTTP 400, field scope, resourceKey auth.token.invalid_request, traceId abc)',
    );
    expect(upstream() - before).toBe(1);
  });

  it('times out each attempt and answers temporarily_unavailable after the last', async () => {
    stack.sandbox.setDelayMs(1500);
    const before = upstream();
    try {
      const answer = await container({ TOKEN_ENDPOINT_TIMEOUT_MS: '200' })({ scopes: ['limitrail.runtime.read'] });
      expect(answer).toMatchObject({ error: 'temporarily_unavailable', status: 503 });
      expect(answer.error_description).toBe('the token endpoint did not answer within 200 ms (3 attempts)');
      expect(upstream() - before).toBe(3);
    } finally {
      stack.sandbox.setDelayMs(0);
    }
  });

  it('stops retrying when the next attempt would not fit in the invocation, and answers in time', async () => {
    stack.sandbox.queueFaults({ status: 503, body: '', headers: { 'retry-after': '5' } });
    const before = upstream();
    const shortLived = container({}, { getRemainingTimeInMillis: () => 2_000 });
    const answer = await shortLived({ scopes: ['limitrail.accounts.read', 'limitrail.runtime.read'] });
    expect(answer).toMatchObject({ error: 'temporarily_unavailable', status: 503 });
    expect(answer.error_description).toContain('no time left for another attempt');
    expect(upstream() - before).toBe(1);
  });

  it.each([
    [
      'an HTML page with 200',
      { status: 200, body: '<html>welcome</html>', headers: html },
      ['limitrail.usage.read', 'limitrail.usage.write'],
    ],
    [
      'JSON without the fields',
      { status: 200, body: '{"ok":true}', headers: json },
      ['limitrail.runtime.read', 'limitrail.usage.write'],
    ],
    [
      'a token of another type',
      { status: 200, body: '{"access_token":"abc","token_type":"MAC","expires_in":3600}', headers: json },
      ['limitrail.accounts.read', 'limitrail.usage.write'],
    ],
  ])('answers server_error for %s and caches nothing', async (_name, fault, scopes) => {
    stack.sandbox.queueFaults(fault);
    const before = upstream();
    const invoke = container();
    expect(await invoke({ scopes })).toMatchObject({ error: 'server_error', status: 502 });
    expect(upstream() - before).toBe(1);
    const next = await invoke({ scopes });
    expect(next.token_type).toBe('Bearer');
    expect(upstream() - before).toBe(2);
  });
});

describe('keeps answering through outages', () => {
  let stack: BrokerStack;
  const upstream = () => stack.sandbox.stats().tokenRequests;
  const down = { status: 503, body: '<html>down</html>', headers: html };

  beforeAll(async () => {
    stack = await startBrokerStack({ tableName: 'tokens-outages' });
    Object.assign(process.env, stack.env);
    secretsSeen.add(stack.sandbox.clients[0]!.clientSecret);
  });
  afterAll(async () => stack?.stop());

  it('answers a still-valid cached token marked stale when the endpoint is down', async () => {
    const scopes = ['limitrail.usage.write'];
    const seeded = await seedToken(stack, scopes, {
      accessToken: 'seeded-stale-candidate',
      ageSec: 3600 - 100,
      lifetimeSec: 3600,
    });
    stack.sandbox.queueFaults(down, down, down);
    const lines = logLines.length;
    const answer = track(await inProcessContainer(stack.env, logLines)({ scopes, minTtlSeconds: 300 }));
    expect(answer).toMatchObject({ access_token: seeded.accessToken, stale: true });
    expect(answer.expires_in).toBeLessThanOrEqual(100);
    const newLines = logLines.slice(lines).map((l) => JSON.parse(l));
    expect(newLines).toContainEqual(
      expect.objectContaining({
        degraded: 'stale_answer',
        client: 'limitrail',
        scopes,
        reason: 'upstream_unavailable',
        cacheKey: expect.stringMatching(/^v1:/),
      }),
    );
    expect(newLines.find((l) => l._aws)).toMatchObject({ StaleAnswers: 1, RetriesExhausted: 1 });
  });

  it('does not answer a token below the hard floor of life left', async () => {
    const scopes = ['limitrail.usage.read'];
    await seedToken(stack, scopes, { accessToken: 'seeded-below-floor', ageSec: 3600 - 20, lifetimeSec: 3600 });
    stack.sandbox.queueFaults(down, down, down);
    const answer = await inProcessContainer(stack.env, logLines)({ scopes, minTtlSeconds: 300 });
    expect(answer).toMatchObject({ error: 'temporarily_unavailable' });
  });

  it('works from memory and the endpoint when the table stops, single flight in the container', async () => {
    const tableMoto = await startMoto();
    try {
      await setupLocalAws({
        endpoint: tableMoto.endpoint,
        region: REGION,
        tableName: stack.tableName,
        secretId: 'unused',
        secretValue: { client_id: 'x', client_secret: 'unused-secret-value' },
      });
      const dynamodb = new DynamoDBClient({ endpoint: tableMoto.endpoint, region: REGION, maxAttempts: 1 });
      const invoke = inProcessContainer(stack.env, logLines, { dynamodb });
      const cached = track(await invoke({ scopes: ['limitrail.accounts.read'] }));
      await tableMoto.stop();
      const before = upstream();
      const lines = logLines.length;
      expect(track(await invoke({ scopes: ['limitrail.accounts.read'] })).access_token).toBe(cached.access_token);
      const answers = await Promise.all(
        Array.from({ length: 8 }, () => invoke({ scopes: ['limitrail.runtime.read'] })),
      );
      expect(new Set(answers.map((a) => track(a).access_token)).size).toBe(1);
      expect(upstream() - before).toBe(1);
      expect(logLines.slice(lines).map((l) => JSON.parse(l))).toContainEqual(
        expect.objectContaining({ degraded: 'table_bypass', client: 'limitrail', reason: 'table_unavailable' }),
      );
    } finally {
      await tableMoto.stop();
    }
  });

  it('answers without storing, and releases the lease, when KMS is unavailable', async () => {
    const kms = new KMSClient({ endpoint: 'http://127.0.0.1:9', region: REGION, maxAttempts: 1 });
    const scopes = ['limitrail.runtime.read', 'limitrail.usage.write'];
    const answer = track(await inProcessContainer(stack.env, logLines, { kms })({ scopes }));
    expect(answer.token_type).toBe('Bearer');
    const items = await stack.scanTable();
    expect(items.filter((i) => i.scope?.S === scopes.join(' '))).toEqual([]);
    expect(items.filter((i) => i.leaseOwner)).toEqual([]);
  });

  it('keeps using the last secret read when Secrets Manager stops', async () => {
    const secretsMoto = await startMoto();
    try {
      const client = stack.sandbox.clients[0]!;
      await setupLocalAws({
        endpoint: secretsMoto.endpoint,
        region: REGION,
        tableName: 'unused',
        secretId: SECRET_ID,
        secretValue: { client_id: client.clientId, client_secret: client.clientSecret },
      });
      const secretsManager = new SecretsManagerClient({
        endpoint: secretsMoto.endpoint,
        region: REGION,
        maxAttempts: 1,
      });
      const invoke = inProcessContainer({ ...stack.env, SECRET_MAX_AGE_SEC: '0' }, logLines, { secretsManager });
      expect(track(await invoke({ scopes: ['limitrail.accounts.read', 'limitrail.usage.read'] })).token_type).toBe(
        'Bearer',
      );
      await secretsMoto.stop();
      const lines = logLines.length;
      expect(track(await invoke({ scopes: ['limitrail.accounts.read', 'limitrail.usage.write'] })).token_type).toBe(
        'Bearer',
      );
      expect(logLines.slice(lines).map((l) => JSON.parse(l))).toContainEqual(
        expect.objectContaining({ degraded: 'secret_fallback', client: 'limitrail' }),
      );
    } finally {
      await secretsMoto.stop();
    }
  });
});

describe('forced refresh after a 401', () => {
  let stack: BrokerStack;
  const upstream = () => stack.sandbox.stats().tokenRequests;
  // These direct invokes prove no principal, so they share one forced-refresh budget per client (force-budget.ts):
  // each test starts in an interval of its own, its containers' clocks moved on from the last test's.
  let shiftMs = 0;
  const clock = (extraMs = 0) => ({ nowMs: () => Date.now() + shiftMs + extraMs });
  const container = (overrides: RuntimeOverrides = {}) =>
    inProcessContainer(stack.env, logLines, { clock: clock(), ...overrides });
  const invoke = async (event: unknown) => track(await container()(event));
  beforeEach(() => {
    shiftMs += 70_000;
  });

  beforeAll(async () => {
    stack = await startBrokerStack({ tableName: 'tokens-forced' });
    Object.assign(process.env, stack.env);
    secretsSeen.add(stack.sandbox.clients[0]!.clientSecret);
  });
  afterAll(async () => stack?.stop());

  it('refreshes when the cached token is the rejected one', async () => {
    const scopes = ['limitrail.usage.write'];
    const first = await invoke({ scopes });
    const before = upstream();
    const forced = await invoke({
      scopes,
      forceRefresh: true,
      rejectedTokenSha256: sha256(first.access_token as string),
    });
    expect(forced.access_token).not.toBe(first.access_token);
    expect(upstream() - before).toBe(1);
    // Every container now gets the new token.
    expect((await invoke({ scopes })).access_token).toBe(forced.access_token);
  });

  it('returns the cached token without calling the endpoint when it is not the rejected one', async () => {
    const scopes = ['limitrail.usage.write'];
    const current = await invoke({ scopes });
    const before = upstream();
    const forced = await invoke({
      scopes,
      forceRefresh: true,
      rejectedTokenSha256: sha256('an older token').toUpperCase(),
    });
    expect(forced.access_token).toBe(current.access_token);
    expect(upstream()).toBe(before);
  });

  it('coalesces a herd of forced refreshes without a fingerprint into one upstream request', async () => {
    const scopes = ['limitrail.runtime.read'];
    const seeded = await seedToken(stack, scopes, {
      accessToken: 'seeded-rejected-by-limitrail',
      ageSec: 120,
      lifetimeSec: 3600,
    });
    stack.sandbox.setDelayMs(200);
    const before = upstream();
    try {
      const containers = Array.from({ length: 3 }, () => container());
      const answers = await Promise.all(
        containers.flatMap((c) => Array.from({ length: 4 }, () => c({ scopes, forceRefresh: true }))),
      );
      expect(new Set(answers.map((a) => track(a).access_token))).toEqual(new Set([answers[0]!.access_token]));
      expect(answers[0]!.access_token).not.toBe(seeded.accessToken);
    } finally {
      stack.sandbox.setDelayMs(0);
    }
    expect(upstream() - before).toBe(1);
    await invoke({ scopes, forceRefresh: true });
    expect(upstream() - before).toBe(1);
  });

  it('makes one upstream request per interval however often the current token is reported rejected, across containers', async () => {
    const scopes = ['limitrail.accounts.read'];
    const rejecting = (token: unknown) => ({
      scopes,
      forceRefresh: true,
      rejectedTokenSha256: sha256(token as string),
    });
    const first = await invoke({ scopes });
    const before = upstream();
    const second = await invoke(rejecting(first.access_token));
    expect(second.access_token).not.toBe(first.access_token);
    expect(upstream() - before).toBe(1);
    // Every call a new container: the bound lives on the table item, not in a container's memory.
    for (let i = 0; i < 5; i++) {
      const refused = await invoke(rejecting(second.access_token));
      expect(refused).toMatchObject({ error: 'temporarily_unavailable', status: 503 });
      expect(refused.retryAfterSeconds).toBeGreaterThanOrEqual(1);
      expect(refused.retryAfterSeconds).toBeLessThanOrEqual(30);
    }
    // A fingerprint that is not the current token still gets the current token.
    expect((await invoke(rejecting(first.access_token))).access_token).toBe(second.access_token);
    expect(upstream() - before).toBe(1);
    // Once the interval has passed, the next forced refresh fetches again.
    const later = container({ clock: clock(31_000) });
    const third = track(await later(rejecting(second.access_token)));
    expect(third.access_token).not.toBe(second.access_token);
    expect(upstream() - before).toBe(2);
  });

  it('fetches at once for the first forced refresh after a quiet interval, even when the token is seconds old', async () => {
    const scopes = ['limitrail.accounts.read', 'limitrail.usage.read'];
    const fresh = await invoke({ scopes });
    const before = upstream();
    const forced = await invoke({ scopes, forceRefresh: true });
    expect(forced.access_token).not.toBe(fresh.access_token);
    expect(upstream() - before).toBe(1);
    expect((await invoke({ scopes, forceRefresh: true })).access_token).toBe(forced.access_token);
    expect(upstream() - before).toBe(1);
  });

  it("bounds forced refreshes in the container's memory while the table is down", async () => {
    const deadTable = new DynamoDBClient({ endpoint: 'http://127.0.0.1:9', region: REGION, maxAttempts: 1 });
    const cut = container({ dynamodb: deadTable });
    const scopes = ['limitrail.runtime.read', 'limitrail.usage.read'];
    const first = track(await cut({ scopes }));
    const before = upstream();
    const second = track(
      await cut({ scopes, forceRefresh: true, rejectedTokenSha256: sha256(first.access_token as string) }),
    );
    expect(second.access_token).not.toBe(first.access_token);
    const refused = await cut({
      scopes,
      forceRefresh: true,
      rejectedTokenSha256: sha256(second.access_token as string),
    });
    expect(refused).toMatchObject({ error: 'temporarily_unavailable', status: 503 });
    expect(refused.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(upstream() - before).toBe(1);
  });
});

describe('secret rotation', () => {
  let stack: BrokerStack;
  const upstream = () => stack.sandbox.stats().tokenRequests;
  const clientId = () => stack.sandbox.clients[0]!.clientId;
  const rotateSecretTo = async (secret: string) => {
    secretsSeen.add(secret);
    await stack.secretsManager.send(
      new PutSecretValueCommand({
        SecretId: SECRET_ID,
        SecretString: JSON.stringify({ client_id: clientId(), client_secret: secret }),
      }),
    );
  };

  beforeAll(async () => {
    stack = await startBrokerStack({ tableName: 'tokens-rotation' });
    Object.assign(process.env, stack.env);
    secretsSeen.add(stack.sandbox.clients[0]!.clientSecret);
  });
  afterAll(async () => stack?.stop());

  it('re-reads the secret when the endpoint rejects the cached credentials and uses the new version', async () => {
    const invoke = inProcessContainer(stack.env, logLines);
    expect(track(await invoke({ scopes: ['limitrail.usage.read'] })).token_type).toBe('Bearer'); // caches version 1
    await rotateSecretTo('rotated-secret-version-2');
    stack.sandbox.setClientSecrets(clientId(), ['rotated-secret-version-2']);
    const before = upstream();
    const answer = track(await invoke({ scopes: ['limitrail.usage.write'] }));
    expect(answer.token_type).toBe('Bearer');
    expect(upstream() - before).toBe(2);
  });

  it('falls back to AWSPREVIOUS while the endpoint has not activated the rotated secret', async () => {
    await rotateSecretTo('rotated-secret-version-3');
    stack.sandbox.setClientSecrets(clientId(), ['rotated-secret-version-2']);
    const before = upstream();
    const answer = track(await inProcessContainer(stack.env, logLines)({ scopes: ['limitrail.accounts.read'] }));
    expect(answer.token_type).toBe('Bearer');
    expect(upstream() - before).toBe(2);
  });

  it('answers server_error naming the secret only when neither version is accepted', async () => {
    stack.sandbox.setClientSecrets(clientId(), ['a-secret-nobody-has']);
    const answer = await inProcessContainer(stack.env, logLines)({ scopes: ['limitrail.runtime.read'] });
    expect(answer).toMatchObject({ error: 'server_error', status: 502 });
    expect(answer.error_description).toMatch(
      /rejected the client credentials in secret "limitrail\/broker-client" .*tried its current and previous versions/,
    );
    for (const secret of secretsSeen) expect(answer.error_description).not.toContain(secret);
  });
});

describe('logs of every fault', () => {
  it('contain neither a client secret nor a token, and every line is JSON', () => {
    expect(handedOut.size).toBeGreaterThan(5);
    const all = logLines.join('\n');
    for (const secret of secretsSeen) expect(all).not.toContain(secret);
    for (const token of handedOut) expect(all).not.toContain(token);
    for (const line of logLines) expect(() => JSON.parse(line)).not.toThrow();
  });
});
