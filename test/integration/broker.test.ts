import { DynamoDBClient, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { CreateSecretCommand, DeleteSecretCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TABLE_TTL_ATTRIBUTE } from '../../functions/lib/cache/table/table-schema';
import { createTokenHandler } from '../../functions/lib/handlers/token-handler';
import { createRuntime, loggerFromEnv, type RuntimeOverrides } from '../../functions/lib/runtime';
import { captureLogLines } from '../support/log-capture';
import { type BrokerStack, SECRET_ID, startBrokerStack } from '../support/stacks/broker-stack';

/**
 * The token function end to end, in-process, against real components: moto_server for DynamoDB, Secrets Manager
 * and KMS, and the LimitRail sandbox as the token endpoint. Requests are counted where they arrive.
 */
let stack: BrokerStack;
const logLines: string[] = [];
const handedOut: string[] = [];

type Answer = Record<string, unknown>;

/** A fresh "container": its own runtime, memory cache and AWS clients. */
const container = (envOverrides: Record<string, string> = {}, overrides: RuntimeOverrides = {}) => {
  const env = { ...stack.env, ...envOverrides };
  captureLogLines(logLines);
  const handler = createTokenHandler(
    () => createRuntime(env, overrides),
    () => loggerFromEnv(env),
  );
  return async (
    event: unknown,
    context: { awsRequestId: string } = { awsRequestId: 'test-request' },
  ): Promise<Answer> => {
    const answer = (await handler(event, context)) as unknown as Answer;
    if (typeof answer.access_token === 'string') handedOut.push(answer.access_token);
    return answer;
  };
};

const upstreamRequests = () => stack.sandbox.stats().tokenRequests;
const clientsWith = (extra: Record<string, unknown>) => {
  const clients = JSON.parse(stack.env.BROKER_CLIENTS!) as Record<string, unknown>;
  return JSON.stringify({ ...clients, ...extra });
};
const sandboxClient = () => stack.sandbox.clients[0]!;
/** Items that hold a token (a failed fetch may leave a lease-only item behind; it holds nothing). */
const tokenItems = async () =>
  (await stack.scanTable())
    .filter((i) => i.tokenCiphertext)
    .map((i) => `${i.cacheKey!.S}:${i.tokenFingerprint!.S}`)
    .sort();

beforeAll(async () => {
  stack = await startBrokerStack();
  Object.assign(process.env, stack.env); // the SDK reads AWS_ENDPOINT_URL from the environment, as in Lambda
});

afterAll(async () => {
  await stack?.stop();
});

describe('token function: cache path', () => {
  it('fetches a token once, then serves it from memory without reaching the endpoint', async () => {
    const invoke = container();
    const before = upstreamRequests();
    const first = await invoke({ client: 'limitrail', scopes: ['limitrail.usage.write'], minTtlSeconds: 120 });
    expect(first).toMatchObject({ token_type: 'Bearer', scope: 'limitrail.usage.write', client: 'limitrail' });
    expect(first.access_token).toMatch(/^eyJ/);
    expect(first.expires_in).toBeGreaterThan(3590);
    const second = await invoke({ scopes: ['limitrail.usage.write'] });
    expect(second.access_token).toBe(first.access_token);
    expect(upstreamRequests() - before).toBe(1);
  });

  it('writes expiresAtEpochSec = issue time + expires_in, and no plain token, to the table', async () => {
    const invoke = container();
    const sentAfterSec = Math.floor(Date.now() / 1000);
    const answer = await invoke({ scopes: ['limitrail.runtime.read'] });
    const answeredBeforeSec = Math.ceil(Date.now() / 1000);
    const items = await stack.scanTable();
    const item = items.find((i) => i.scope?.S === 'limitrail.runtime.read');
    expect(item).toBeDefined();
    const expiresAt = Number(item![TABLE_TTL_ATTRIBUTE]!.N);
    expect(expiresAt).toBeGreaterThanOrEqual(sentAfterSec + 3600);
    expect(expiresAt).toBeLessThanOrEqual(answeredBeforeSec + 3600);
    expect(Number(item!.issuedAtEpochSec!.N) + 3600).toBe(expiresAt);
    expect(new Date(answer.expires_at as string).getTime() / 1000).toBe(expiresAt);
    const raw = JSON.stringify(items, (_k, v) => (v instanceof Uint8Array ? Buffer.from(v).toString('latin1') : v));
    expect(raw).not.toContain(answer.access_token as string);
  });

  it('serves a cold container from the table without reading the secret or reaching the endpoint', async () => {
    await container()({ scopes: ['limitrail.accounts.read'] });
    const before = upstreamRequests();
    // Secrets Manager unreachable for this container: a table hit must not need it.
    const noSecrets = new SecretsManagerClient({ endpoint: 'http://127.0.0.1:9', region: 'us-east-1', maxAttempts: 1 });
    const cold = container({}, { secretsManager: noSecrets });
    const answer = await cold({ scopes: ['limitrail.accounts.read'] });
    expect(answer).toMatchObject({ token_type: 'Bearer', scope: 'limitrail.accounts.read' });
    expect(upstreamRequests()).toBe(before);
    expect(logLines.some((l) => l.includes('"source":"table"'))).toBe(true);
  });

  it('shares one cache entry between reordered and duplicated scopes', async () => {
    const invoke = container();
    const before = upstreamRequests();
    const itemsBefore = (await stack.scanTable()).length;
    const a = await invoke({ scopes: ['limitrail.usage.write', 'limitrail.usage.read', 'limitrail.usage.read'] });
    const b = await container()({ scopes: ['limitrail.usage.read', 'limitrail.usage.write'] });
    expect(b.access_token).toBe(a.access_token);
    expect(a.scope).toBe('limitrail.usage.read limitrail.usage.write');
    expect(upstreamRequests() - before).toBe(1);
    expect((await stack.scanTable()).length - itemsBefore).toBe(1);
  });

  it('does not serve an expired item still present in the table', async () => {
    const scopes = ['limitrail.usage.read'];
    const original = await container()({ scopes });
    const later = { nowMs: () => Date.now() + 3601 * 1000 };
    const before = upstreamRequests();
    const answer = await container({}, { clock: later })({ scopes });
    expect(upstreamRequests() - before).toBe(1);
    expect(answer.access_token).not.toBe(original.access_token);
  });

  it('treats a token with less than minTtlSeconds left as a miss, and serves it to callers who accept it', async () => {
    const scopes = ['limitrail.accounts.read', 'limitrail.usage.read'];
    const original = await container()({ scopes });
    const shiftMs = (3600 - 100) * 1000; // 100 s of life left: past the refresh point too
    const nearExpiry = { nowMs: () => Date.now() + shiftMs };
    // Another container holds the refresh lease for a moment, so no refresh ahead happens here.
    const item = (await stack.scanTable()).find((i) => i.scope?.S === scopes.join(' '))!;
    await stack.dynamodb.send(
      new PutItemCommand({
        TableName: stack.tableName,
        Item: {
          ...item,
          leaseOwner: { S: 'another-container' },
          leaseUntilEpochMs: { N: String(Date.now() + shiftMs + 300) },
        },
      }),
    );
    const before = upstreamRequests();
    const relaxed = await container({}, { clock: nearExpiry })({ scopes, minTtlSeconds: 60 });
    expect(relaxed.access_token).toBe(original.access_token);
    expect(upstreamRequests()).toBe(before);
    const strict = await container({}, { clock: nearExpiry })({ scopes, minTtlSeconds: 120 });
    expect(strict.access_token).not.toBe(original.access_token);
    expect(upstreamRequests() - before).toBe(1);
  });

  it('makes one upstream request for 100 sequential requests of one scope set', async () => {
    const invoke = container();
    const before = upstreamRequests();
    for (let i = 0; i < 100; i++) {
      const answer = await invoke({ scopes: ['limitrail.runtime.read', 'limitrail.usage.write'] });
      expect(answer.token_type).toBe('Bearer');
    }
    expect(upstreamRequests() - before).toBe(1);
  });

  it('shares one in-flight fetch between concurrent misses in a container', async () => {
    const invoke = container();
    const before = upstreamRequests();
    stack.sandbox.setDelayMs(200);
    try {
      const answers = await Promise.all(
        Array.from({ length: 10 }, () => invoke({ scopes: ['limitrail.accounts.read', 'limitrail.runtime.read'] })),
      );
      expect(new Set(answers.map((a) => a.access_token)).size).toBe(1);
    } finally {
      stack.sandbox.setDelayMs(0);
    }
    expect(upstreamRequests() - before).toBe(1);
  });

  it('treats an item whose encrypted token was copied from another key as a miss', async () => {
    await container()({ scopes: ['limitrail.usage.write'] });
    const items = await stack.scanTable();
    const source = items.find((i) => i.scope?.S === 'limitrail.usage.write')!;
    const victim = items.find((i) => i.scope?.S === 'limitrail.runtime.read')!;
    await stack.dynamodb.send(
      new PutItemCommand({
        TableName: stack.tableName,
        Item: { ...victim, tokenCiphertext: source.tokenCiphertext!, wrappedDataKey: source.wrappedDataKey! },
      }),
    );
    const before = upstreamRequests();
    const answer = await container()({ scopes: ['limitrail.runtime.read'] });
    expect(answer.token_type).toBe('Bearer');
    expect(upstreamRequests() - before).toBe(1);
    expect(logLines.some((l) => l.includes('decrypt_failed'))).toBe(true);
  });
});

describe('token function: refusals change nothing', () => {
  const badEvents: [string, unknown, string][] = [
    ['a null event', null, 'invalid_request'],
    ['an array event', [], 'invalid_request'],
    ['an unknown field', { scopes: ['limitrail.usage.read'], force: true }, 'invalid_request'],
    ['missing scopes', { client: 'limitrail' }, 'invalid_request'],
    ['empty scopes', { scopes: [] }, 'invalid_request'],
    ['a malformed scope', { scopes: ['bad scope'] }, 'invalid_request'],
    ['an unknown client', { client: 'nope', scopes: ['limitrail.usage.read'] }, 'invalid_request'],
    ['a bad minTtlSeconds', { scopes: ['limitrail.usage.read'], minTtlSeconds: 5000 }, 'invalid_request'],
    ['a scope not allowed for the client', { scopes: ['limitrail.admin'] }, 'invalid_scope'],
  ];

  it.each(badEvents)(
    'answers %s with an OAuth error and leaves table and endpoint untouched',
    async (_name, event, code) => {
      const itemsBefore = JSON.stringify(await stack.scanTable());
      const before = upstreamRequests();
      const answer = await container()(event);
      expect(answer).toMatchObject({ error: code, status: 400 });
      expect(typeof answer.error_description).toBe('string');
      expect(Object.keys(answer).sort()).toEqual(['error', 'error_description', 'status']);
      expect(JSON.stringify(await stack.scanTable())).toBe(itemsBefore);
      expect(upstreamRequests()).toBe(before);
    },
  );
});

describe('token function: dependency and configuration failures', () => {
  const createSecret = (name: string, value: string) =>
    stack.secretsManager.send(new CreateSecretCommand({ Name: name, SecretString: value }));

  it.each([
    ['missing', undefined, 'was not found'],
    ['malformed', 'client_id=x;client_secret=hunter2hunter2', 'is not valid JSON'],
    ['incomplete', JSON.stringify({ client_id: 'x', secret: 'hunter2hunter2' }), '"client_secret"'],
  ])('answers server_error naming a %s secret, never its value', async (kind, value, fragment) => {
    const secretId = `broken/${kind}`;
    if (value !== undefined) await createSecret(secretId, value);
    const clients = clientsWith({
      broken: { secretId, tokenUrl: stack.sandbox.tokenUrl, scopes: ['limitrail.usage.read'] },
    });
    const answer = await container({ BROKER_CLIENTS: clients })({ client: 'broken', scopes: ['limitrail.usage.read'] });
    expect(answer).toMatchObject({ error: 'server_error', status: 500 });
    expect(answer.error_description).toContain(`secret "${secretId}"`);
    expect(answer.error_description).toContain(fragment);
    expect(answer.error_description).not.toContain('hunter2');
  });

  it('answers server_error naming the secret whose credentials the endpoint rejected', async () => {
    await createSecret(
      'limitrail/wrong',
      JSON.stringify({ client_id: sandboxClient().clientId, client_secret: 'wrong-secret-value' }),
    );
    const clients = clientsWith({
      wrong: { secretId: 'limitrail/wrong', tokenUrl: stack.sandbox.tokenUrl, scopes: sandboxClient().scopes },
    });
    // A scope set nobody fetched yet: the same client id with the right secret would otherwise be a cache hit.
    const answer = await container({ BROKER_CLIENTS: clients })({ client: 'wrong', scopes: sandboxClient().scopes });
    expect(answer).toMatchObject({ error: 'server_error', status: 502 });
    expect(answer.error_description).toMatch(
      /rejected the client credentials in secret "limitrail\/wrong" \(invalid_client, HTTP 401.*traceId [0-9a-f]{32}\)/,
    );
  });

  it('answers invalid_scope when the endpoint refuses a scope the broker allows', async () => {
    const clients = clientsWith({
      wide: {
        secretId: SECRET_ID,
        tokenUrl: stack.sandbox.tokenUrl,
        scopes: ['limitrail.usage.read', 'limitrail.admin'],
      },
    });
    const answer = await container({ BROKER_CLIENTS: clients })({ client: 'wide', scopes: ['limitrail.admin'] });
    expect(answer).toMatchObject({ error: 'invalid_scope', status: 400 });
    expect(answer.error_description).toContain('invalid_scope, HTTP 400, field scope');
  });

  it('answers temporarily_unavailable when the endpoint is down, and caches nothing', async () => {
    const clients = clientsWith({
      down: { secretId: SECRET_ID, tokenUrl: 'http://127.0.0.1:9/connect/token', scopes: ['limitrail.usage.read'] },
    });
    const tokensBefore = await tokenItems();
    const answer = await container({ BROKER_CLIENTS: clients })({ client: 'down', scopes: ['limitrail.usage.read'] });
    expect(answer).toMatchObject({ error: 'temporarily_unavailable', status: 503 });
    expect(answer.error_description).toContain('could not be reached');
    expect(await tokenItems()).toEqual(tokensBefore);
  });

  it('answers temporarily_unavailable when the endpoint keeps failing, and the next request succeeds', async () => {
    const invoke = container();
    const page = { status: 503, body: '<html>maintenance</html>', headers: { 'content-type': 'text/html' } };
    stack.sandbox.queueFaults(page, page, page);
    const before = upstreamRequests();
    const failed = await invoke({ scopes: ['limitrail.runtime.read', 'limitrail.usage.read'] });
    expect(failed).toMatchObject({ error: 'temporarily_unavailable', status: 503 });
    expect(failed.error_description).toContain('(3 attempts)');
    expect(upstreamRequests() - before).toBe(3);
    const ok = await invoke({ scopes: ['limitrail.runtime.read', 'limitrail.usage.read'] });
    expect(ok.token_type).toBe('Bearer');
  });

  it('does not follow a redirect from the token endpoint', async () => {
    const before = upstreamRequests();
    stack.sandbox.queueFaults({ status: 302, body: '', headers: { location: `${stack.sandbox.tokenUrl}?again=1` } });
    const answer = await container()({ scopes: ['limitrail.accounts.read', 'limitrail.usage.write'] });
    expect(answer).toMatchObject({ error: 'server_error', status: 502 });
    expect(answer.error_description).toContain('redirects are not followed');
    expect(upstreamRequests() - before).toBe(1);
  });

  it('stops reading an oversized answer and hands out nothing', async () => {
    const huge = JSON.stringify({ access_token: 'x'.repeat(200_000), token_type: 'Bearer', expires_in: 3600 });
    stack.sandbox.queueFaults({ status: 200, body: huge, headers: { 'content-type': 'application/json' } });
    const tokensBefore = await tokenItems();
    const answer = await container()({ scopes: ['limitrail.accounts.read', 'limitrail.usage.write'] });
    expect(answer).toMatchObject({ error: 'server_error', status: 502 });
    expect(answer.error_description).toContain('more than 65536 bytes');
    expect(await tokenItems()).toEqual(tokensBefore);
  });

  it('answers every invocation of a misconfigured broker with a bare server_error and its request id, the detail only in the log', async () => {
    const invoke = container({ TOKEN_TABLE_NAME: '' });
    for (const requestId of ['req-1', 'req-2']) {
      expect(await invoke({ scopes: ['limitrail.usage.read'] }, { awsRequestId: requestId })).toEqual({
        error: 'server_error',
        error_description: `the broker is misconfigured; the platform team can find the cause in its logs (request id ${requestId})`,
        status: 500,
      });
      const logged = logLines
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.requestId === requestId);
      expect(logged).toContainEqual(
        expect.objectContaining({
          message: 'broker configuration invalid',
          detail: 'invalid configuration: TOKEN_TABLE_NAME is not set',
        }),
      );
    }
  });

  it('answers temporarily_unavailable, not a crash, when DynamoDB and the endpoint are both down', async () => {
    const clients = clientsWith({
      down: { secretId: SECRET_ID, tokenUrl: 'http://127.0.0.1:9/connect/token', scopes: ['limitrail.usage.read'] },
    });
    const deadTable = new DynamoDBClient({ endpoint: 'http://127.0.0.1:9', region: 'us-east-1', maxAttempts: 1 });
    const answer = await container(
      { BROKER_CLIENTS: clients },
      { dynamodb: deadTable },
    )({
      client: 'down',
      scopes: ['limitrail.usage.read'],
    });
    expect(answer).toMatchObject({ error: 'temporarily_unavailable' });
  });

  afterAll(async () => {
    for (const name of ['broken/malformed', 'broken/incomplete', 'limitrail/wrong']) {
      await stack.secretsManager
        .send(new DeleteSecretCommand({ SecretId: name, ForceDeleteWithoutRecovery: true }))
        .catch(() => undefined);
    }
  });
});

describe('logs of the whole run', () => {
  it('contain neither the client secret nor any handed-out token', () => {
    expect(handedOut.length).toBeGreaterThan(10);
    expect(logLines.length).toBeGreaterThan(10);
    const all = logLines.join('\n');
    expect(all).not.toContain(sandboxClient().clientSecret);
    for (const token of new Set(handedOut)) {
      expect(all).not.toContain(token);
      expect(all).not.toContain(token.split('.')[2]!); // not even the signature part
    }
    for (const line of logLines) expect(() => JSON.parse(line)).not.toThrow();
  });
});
