import { createHash, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Iam, roleSession, urlEvent } from '../support/fakes/url-event';
import { type BrokerStack, inProcessContainer, startBrokerStack } from '../support/stacks/broker-stack';

/**
 * The token function behind its Function URL (AuthType AWS_IAM), with BROKER_CALLERS grants, against real
 * components; and the audit trail of a realistic sequence, read from the logs of the run.
 */
const ACCOUNT = '111111111111';
const GRANTS = [
  {
    principal: `arn:aws:iam::${ACCOUNT}:role/billing`,
    client: 'limitrail',
    scopes: ['limitrail.usage.write', 'limitrail.usage.read'],
  },
  { principal: '222222222222', client: 'limitrail', scopes: ['limitrail.accounts.read', 'limitrail.runtime.read'] },
];
const role = (name: string, account = ACCOUNT): Iam => roleSession(name, account);
let stack: BrokerStack;
const logLines: string[] = [];
const issued: { requestId: string; token: string }[] = [];
const refused: string[] = [];

interface HttpAnswer {
  statusCode: number;
  headers: Record<string, string>;
  body: Record<string, unknown>;
}

const call = async (event: unknown, env: Record<string, string> = {}): Promise<HttpAnswer & { requestId: string }> => {
  const requestId = randomUUID();
  const invoke = inProcessContainer({ ...stack.env, BROKER_CALLERS: JSON.stringify(GRANTS), ...env }, logLines);
  const raw = (await invoke(event, { awsRequestId: requestId })) as unknown as {
    statusCode: number;
    headers: Record<string, string>;
    body: string;
  };
  const body = JSON.parse(raw.body) as Record<string, unknown>;
  if (typeof body.access_token === 'string') issued.push({ requestId, token: body.access_token });
  else refused.push(requestId);
  return { ...raw, body, requestId };
};
const upstream = () => stack.sandbox.stats().tokenRequests;
const snapshot = async () => ({ items: JSON.stringify(await stack.scanTable()), upstream: upstream() });

beforeAll(async () => {
  stack = await startBrokerStack({ tableName: 'tokens-url' });
  Object.assign(process.env, stack.env);
});
afterAll(async () => stack?.stop());

describe('Function URL with AWS_IAM', () => {
  it('gives a session of a granted role its token, as JSON that nothing may cache', async () => {
    const answer = await call(urlEvent({ scopes: ['limitrail.usage.write'] }, { iam: role('billing') }));
    expect(answer.statusCode).toBe(200);
    expect(answer.headers).toMatchObject({
      'content-type': 'application/json',
      'cache-control': 'no-store',
      pragma: 'no-cache',
    });
    expect(answer.body).toMatchObject({ token_type: 'Bearer', scope: 'limitrail.usage.write', client: 'limitrail' });
  });

  it('accepts the granted role itself and a base64 body', async () => {
    const iam = { userArn: `arn:aws:iam::${ACCOUNT}:role/billing`, accountId: ACCOUNT };
    const answer = await call(urlEvent({ scopes: ['limitrail.usage.read'] }, { iam, base64: true }));
    expect(answer.statusCode).toBe(200);
    expect(answer.body.scope).toBe('limitrail.usage.read');
  });

  it('gives everything in a granted account its scopes', async () => {
    const answer = await call(
      urlEvent({ scopes: ['limitrail.accounts.read'] }, { iam: role('anything', '222222222222') }),
    );
    expect(answer.statusCode).toBe(200);
  });

  it.each([
    // Without a grant and without naming a client, the caller learns no client's name.
    ['another role of the account', { iam: role('reporting') }, 403, 'access_denied', 'has no grant'],
    [
      'the same role name in another account',
      { iam: role('billing', '999999999999') },
      403,
      'access_denied',
      'no grant',
    ],
    [
      'a granted role asking beyond its grant',
      { iam: role('billing'), scopes: ['limitrail.runtime.read'] },
      403,
      'access_denied',
      'no grant for scope "limitrail.runtime.read"',
    ],
    ['a request without a verified IAM identity', {}, 403, 'access_denied', 'AuthType AWS_IAM'],
    ['a GET', { iam: role('billing'), method: 'GET' }, 405, 'invalid_request', 'only POST'],
    [
      'a body that is not JSON',
      { iam: role('billing'), body: 'scopes=a' },
      400,
      'invalid_request',
      'JSON token request',
    ],
    [
      'an event field the token request does not have',
      { iam: role('billing'), body: { scopes: ['limitrail.usage.write'], admin: true } },
      400,
      'invalid_request',
      'unknown field "admin"',
    ],
    // A valid request all the same, but more than 16 KiB (JSON whitespace): refused before it is parsed.
    [
      'a token request padded beyond 16 KiB',
      { iam: role('billing'), body: `{"scopes":["limitrail.usage.write"]${' '.repeat(16 * 1024)}}` },
      400,
      'invalid_request',
      'larger than 16384 bytes',
    ],
    [
      'a base64 body that decodes to more than 16 KiB',
      { iam: role('billing'), body: `{"scopes":["limitrail.usage.write"]${' '.repeat(16 * 1024)}}`, base64: true },
      400,
      'invalid_request',
      'larger than 16384 bytes',
    ],
  ])('refuses %s, writing nothing', async (_name, options, status, error, fragment) => {
    const { scopes, body, ...eventOptions } = options as {
      scopes?: string[];
      body?: unknown;
      iam?: Iam;
      method?: string;
      base64?: boolean;
    };
    const before = await snapshot();
    const answer = await call(urlEvent(body ?? { scopes: scopes ?? ['limitrail.runtime.read'] }, eventOptions));
    expect(answer.statusCode).toBe(status);
    expect(answer.body).toMatchObject({ error, status });
    expect(answer.body.error_description).toContain(fragment);
    expect(answer.headers['cache-control']).toBe('no-store');
    if (status === 405) expect(answer.headers.allow).toBe('POST');
    expect(await snapshot()).toEqual(before);
  });

  it('refuses every URL caller when no grants are configured (fail closed)', async () => {
    const answer = await call(urlEvent({ scopes: ['limitrail.usage.write'] }, { iam: role('billing') }), {
      BROKER_CALLERS: '',
    });
    expect(answer.statusCode).toBe(403);
  });

  it('still serves direct invokes, which IAM gates by the invoke permission', async () => {
    const answer = await inProcessContainer(stack.env, logLines)({ scopes: ['limitrail.runtime.read'] });
    expect(answer.token_type).toBe('Bearer');
    issued.push({ requestId: 'test', token: answer.access_token as string });
  });
});

describe('audit trail of a realistic sequence', () => {
  it('runs hits, misses, refusals and upstream errors', async () => {
    const billing = { iam: role('billing') };
    await call(urlEvent({ scopes: ['limitrail.usage.write'] }, billing)); // memory or table hit
    await call(urlEvent({ scopes: ['limitrail.usage.read', 'limitrail.usage.write'] }, billing)); // miss
    await call(urlEvent({ scopes: ['limitrail.usage.write', 'limitrail.usage.read'] }, billing)); // hit, reordered
    await call(urlEvent({ scopes: ['limitrail.usage.write'] }, { iam: role('intruder') })); // refused
    const down = { status: 503, body: '<html>down</html>', headers: { 'content-type': 'text/html' } };
    stack.sandbox.queueFaults(down, down, down);
    const failed = await call(
      urlEvent({ scopes: ['limitrail.accounts.read', 'limitrail.runtime.read'] }, { iam: role('x', '222222222222') }),
    );
    expect(failed.body).toMatchObject({ error: 'temporarily_unavailable' });
    await call(urlEvent({ scopes: ['limitrail.usage.read'] }, billing));
  });

  it('has exactly one audit line per handed-out token, with caller, source and fingerprint, and one per refusal', () => {
    const lines = logLines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(issued.length).toBeGreaterThan(5);
    for (const { requestId, token } of issued) {
      const audit = lines.filter((l) => l.audit === 'issued' && l.requestId === requestId);
      expect(audit).toHaveLength(1);
      expect(audit[0]).toMatchObject({
        client: 'limitrail',
        tokenFingerprint: createHash('sha256').update(token).digest('hex').slice(0, 12),
        source: expect.stringMatching(/^(memory|table|endpoint)$/),
        expiresAtEpochSec: expect.any(Number),
        caller: expect.stringMatching(/^(arn:aws:(sts|iam)::|direct invoke$)/),
        timestamp: expect.any(String),
      });
    }
    for (const requestId of refused) {
      expect(lines.filter((l) => l.audit === 'refused' && l.requestId === requestId)).toHaveLength(1);
    }
  });

  it('leaves no client secret and no token in any log line or table item', async () => {
    const logs = logLines.join('\n');
    const items = JSON.stringify(await stack.scanTable(), (_k, v) =>
      v instanceof Uint8Array ? Buffer.from(v).toString('latin1') : v,
    );
    expect(logs).not.toContain(stack.sandbox.clients[0]!.clientSecret);
    for (const { token } of issued) {
      expect(logs).not.toContain(token);
      expect(items).not.toContain(token);
    }
  });
});
