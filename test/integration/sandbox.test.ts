import { constants, generateKeyPairSync, type KeyObject, randomUUID, sign } from 'node:crypto';
import { createServer } from 'node:net';

import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import {
  DEFAULT_SANDBOX_CLIENT_ID,
  DEFAULT_SANDBOX_SCOPES,
  type Sandbox,
  startSandbox,
} from '../support/stacks/sandbox';

const FORM = 'application/x-www-form-urlencoded';

interface Reply {
  status: number;
  headers: Headers;
  text: string;
  json: Record<string, unknown> | undefined;
}

async function post(url: string, form: Record<string, string>, headers: Record<string, string> = {}): Promise<Reply> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': FORM, ...headers },
    body: new URLSearchParams(form),
  });
  const text = await response.text();
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

const decodeJwtPart = (part: string | undefined): Record<string, unknown> =>
  JSON.parse(Buffer.from(part ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;

const withoutTraceId = ({ traceId: _traceId, ...rest }: Record<string, unknown>) => rest;

describe('LimitRail sandbox token endpoint', () => {
  let sandbox: Sandbox;
  let clientSecret: string;
  const logLines: string[] = [];
  const issuedTokens: string[] = [];

  const credentials = (scope = 'limitrail.usage.read') => ({
    grant_type: 'client_credentials',
    client_id: DEFAULT_SANDBOX_CLIENT_ID,
    client_secret: clientSecret,
    scope,
  });
  const requestToken = async (form: Record<string, string>, headers?: Record<string, string>) => {
    const reply = await post(sandbox.tokenUrl, form, headers);
    if (typeof reply.json?.access_token === 'string') issuedTokens.push(reply.json.access_token);
    return reply;
  };

  beforeAll(async () => {
    sandbox = await startSandbox({ log: (line) => logLines.push(line) });
    clientSecret = sandbox.clients[0]?.clientSecret ?? '';
  });
  afterAll(async () => {
    await sandbox?.stop();
  });
  beforeEach(() => {
    sandbox.resetStats();
    sandbox.setDelayMs(0);
  });

  it('binds to 127.0.0.1 and exposes one default client with a random secret and the public scopes', () => {
    expect(sandbox.url).toBe(`http://127.0.0.1:${sandbox.port}`);
    expect(sandbox.tokenUrl).toBe(`${sandbox.url}/connect/token`);
    expect(sandbox.clients).toHaveLength(1);
    expect(sandbox.clients[0]?.clientId).toBe(DEFAULT_SANDBOX_CLIENT_ID);
    expect(sandbox.clients[0]?.scopes).toEqual(DEFAULT_SANDBOX_SCOPES);
    expect(clientSecret.length).toBeGreaterThanOrEqual(32);
  });

  it('issues a Bearer JWT (HS256) with expires_in, granted scope and no-store caching', async () => {
    const reply = await requestToken(credentials('limitrail.usage.write limitrail.usage.read'));
    expect(reply.status).toBe(200);
    expect(reply.headers.get('content-type')).toMatch(/^application\/json/);
    expect(reply.headers.get('cache-control')).toBe('no-store');
    expect(reply.json).toEqual({
      access_token: expect.stringMatching(/^eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+$/),
      token_type: 'Bearer',
      expires_in: 3600,
      scope: 'limitrail.usage.read limitrail.usage.write',
    });
    const [header, payload] = String(reply.json?.access_token).split('.');
    expect(decodeJwtPart(header)).toEqual({ alg: 'HS256', typ: 'JWT' });
    const claims = decodeJwtPart(payload);
    expect(claims).toMatchObject({
      iss: sandbox.url,
      sub: DEFAULT_SANDBOX_CLIENT_ID,
      client_id: DEFAULT_SANDBOX_CLIENT_ID,
      scope: 'limitrail.usage.read limitrail.usage.write',
    });
    expect(Number(claims.exp) - Number(claims.iat)).toBe(3600);
    expect(claims.jti).toEqual(expect.any(String));
  });

  it('issues a distinct token for every request with the same credentials', async () => {
    const replies = await Promise.all([1, 2, 3, 4, 5].map(() => requestToken(credentials())));
    const tokens = replies.map((r) => r.json?.access_token);
    expect(replies.every((r) => r.status === 200)).toBe(true);
    expect(new Set(tokens).size).toBe(5);
  });

  it('answers a wrong secret and an unknown client with the same 401 invalid_client ProblemDetails', async () => {
    const wrongSecret = await requestToken({ ...credentials(), client_secret: `${clientSecret}x` });
    const unknownClient = await requestToken({ ...credentials(), client_id: 'lr_00000000000000000000000000000000' });
    for (const reply of [wrongSecret, unknownClient]) {
      expect(reply.status).toBe(401);
      expect(reply.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(reply.json).toMatchObject({
        status: 401,
        errorCode: 'invalid_client',
        resourceKey: 'auth.token.invalid_client',
      });
      expect(reply.json?.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(reply.headers.get('x-trace-id')).toBe(reply.json?.traceId);
    }
    expect(withoutTraceId(wrongSecret.json ?? {})).toEqual(withoutTraceId(unknownClient.json ?? {}));
  });

  it('refuses a scope outside the client allow-list with 400 invalid_scope naming that scope', async () => {
    const reply = await requestToken(credentials('limitrail.usage.read limitrail.admin.write'));
    expect(reply.status).toBe(400);
    expect(reply.json).toMatchObject({
      errorCode: 'invalid_scope',
      resourceKey: 'auth.token.invalid_scope',
      field: 'scope',
      status: 400,
    });
    expect(reply.json?.title).toContain('limitrail.admin.write');
  });

  it('rejects a request without scope as 400 invalid_request on field scope', async () => {
    const { scope: _scope, ...withoutScope } = credentials();
    const reply = await requestToken(withoutScope);
    expect(reply.status).toBe(400);
    expect(reply.json).toMatchObject({
      errorCode: 'invalid_request',
      field: 'scope',
      resourceKey: 'auth.token.invalid_request',
    });
  });

  it('rejects a grant type other than client_credentials as 400 unsupported_grant_type', async () => {
    const reply = await requestToken({ ...credentials(), grant_type: 'password' });
    expect(reply.status).toBe(400);
    expect(reply.json).toMatchObject({ errorCode: 'unsupported_grant_type', field: 'grant_type' });
  });

  it('rejects a missing grant_type as 400 invalid_request on field grant_type', async () => {
    const { grant_type: _grantType, ...withoutGrant } = credentials();
    const reply = await requestToken(withoutGrant);
    expect(reply.json).toMatchObject({ status: 400, errorCode: 'invalid_request', field: 'grant_type' });
  });

  it('accepts client credentials in HTTP Basic auth (form-urlencoded then base64)', async () => {
    const basic = Buffer.from(
      `${encodeURIComponent(DEFAULT_SANDBOX_CLIENT_ID)}:${encodeURIComponent(clientSecret)}`,
    ).toString('base64');
    const reply = await requestToken(
      { grant_type: 'client_credentials', scope: 'limitrail.runtime.read' },
      { authorization: `Basic ${basic}` },
    );
    expect(reply.status).toBe(200);
    expect(reply.json?.scope).toBe('limitrail.runtime.read');
  });

  it('rejects a wrong Basic secret with 401 invalid_client and a Basic challenge', async () => {
    const basic = Buffer.from(`${DEFAULT_SANDBOX_CLIENT_ID}:wrong`).toString('base64');
    const reply = await requestToken(
      { grant_type: 'client_credentials', scope: 'limitrail.runtime.read' },
      { authorization: `Basic ${basic}` },
    );
    expect(reply.status).toBe(401);
    expect(reply.json?.errorCode).toBe('invalid_client');
    expect(reply.headers.get('www-authenticate')).toMatch(/^Basic/);
  });

  it('rejects a JSON body as 400 invalid_request', async () => {
    const response = await fetch(sandbox.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(credentials()),
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ errorCode: 'invalid_request' });
  });

  it('accepts a charset parameter on the form content type', async () => {
    const reply = await requestToken(credentials(), { 'content-type': `${FORM}; charset=UTF-8` });
    expect(reply.status).toBe(200);
  });

  it('answers a body over 16 KiB with 413', async () => {
    const reply = await requestToken({ ...credentials(), padding: 'a'.repeat(17 * 1024) });
    expect(reply.status).toBe(413);
    expect(reply.json?.status).toBe(413);
  });

  it('answers other paths with 404 and other methods on the token path with 405 Allow: POST', async () => {
    const notFound = await fetch(`${sandbox.url}/v1/usage`);
    expect(notFound.status).toBe(404);
    expect(notFound.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const wrongMethod = await fetch(sandbox.tokenUrl);
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toBe('POST');
    expect(sandbox.stats()).toMatchObject({ requests: 2, tokenRequests: 0 });
  });

  it('serves queued faults verbatim and in order, then answers normally, counting each request', async () => {
    sandbox.queueFaults(
      { status: 503, body: 'upstream down', headers: { 'content-type': 'text/plain', 'retry-after': '1' } },
      { status: 200, body: '{"access_token":', headers: { 'content-type': 'application/json' } },
    );
    const first = await requestToken(credentials());
    const second = await requestToken(credentials());
    const third = await requestToken(credentials());
    expect([first.status, first.text, first.headers.get('retry-after')]).toEqual([503, 'upstream down', '1']);
    expect([second.status, second.text]).toEqual([200, '{"access_token":']);
    expect(third.status).toBe(200);
    expect(third.json?.token_type).toBe('Bearer');
    expect(sandbox.stats()).toMatchObject({ requests: 3, tokenRequests: 3, tokensIssued: 1 });
  });

  it('delays a queued fault by its own delayMs', async () => {
    sandbox.queueFaults({ status: 504, body: 'late', delayMs: 200 });
    const startedMs = Date.now();
    const reply = await requestToken(credentials());
    expect(reply.status).toBe(504);
    expect(Date.now() - startedMs).toBeGreaterThanOrEqual(190);
  });

  it('delays every token response by setDelayMs', async () => {
    sandbox.setDelayMs(200);
    const startedMs = Date.now();
    const reply = await requestToken(credentials());
    expect(reply.status).toBe(200);
    expect(Date.now() - startedMs).toBeGreaterThanOrEqual(190);
  });

  it('counts requests, token requests and successful issues per normalized scope', async () => {
    await requestToken(credentials('limitrail.usage.write limitrail.usage.read'));
    await requestToken(credentials('limitrail.usage.read limitrail.usage.write limitrail.usage.read'));
    await requestToken(credentials('limitrail.accounts.read'));
    await requestToken({ ...credentials(), client_secret: 'wrong' });
    await fetch(`${sandbox.url}/elsewhere`);
    expect(sandbox.stats()).toEqual({
      requests: 5,
      tokenRequests: 4,
      tokensIssued: 3,
      byScope: { 'limitrail.usage.read limitrail.usage.write': 2, 'limitrail.accounts.read': 1 },
    });
    sandbox.resetStats();
    expect(sandbox.stats()).toEqual({ requests: 0, tokenRequests: 0, tokensIssued: 0, byScope: {} });
  });

  it('logs one line per request with client id and scope, never the secret or a token', async () => {
    await requestToken(credentials('limitrail.usage.read'));
    expect(logLines).toContain(
      `POST /connect/token 200 client=${DEFAULT_SANDBOX_CLIENT_ID} scope="limitrail.usage.read"`,
    );
    expect(issuedTokens.length).toBeGreaterThan(5);
    const allLogs = logLines.join('\n');
    expect(allLogs).not.toContain(clientSecret);
    for (const token of issuedTokens) expect(allLogs).not.toContain(token);
  });
});

describe('LimitRail sandbox options and lifecycle', () => {
  it('uses the configured clients and per-client token lifetime', async () => {
    const sandbox = await startSandbox({
      clients: [
        { clientId: 'lr_short', clientSecret: 'short-secret', scopes: ['a.read'], tokenLifetimeSec: 60 },
        { clientId: 'lr_long', clientSecret: 'long-secret', scopes: ['a.read'] },
      ],
      tokenLifetimeSec: 900,
    });
    try {
      const form = (clientId: string, secret: string) => ({
        grant_type: 'client_credentials',
        client_id: clientId,
        client_secret: secret,
        scope: 'a.read',
      });
      expect((await post(sandbox.tokenUrl, form('lr_short', 'short-secret'))).json?.expires_in).toBe(60);
      expect((await post(sandbox.tokenUrl, form('lr_long', 'long-secret'))).json?.expires_in).toBe(900);
      expect((await post(sandbox.tokenUrl, form(DEFAULT_SANDBOX_CLIENT_ID, 'long-secret'))).status).toBe(401);
    } finally {
      await sandbox.stop();
    }
  });

  it('stop() closes kept-alive connections and frees the port', async () => {
    const sandbox = await startSandbox();
    const { port } = sandbox;
    expect((await fetch(`${sandbox.url}/`)).status).toBe(404); // leaves a kept-alive connection
    await sandbox.stop();
    await expect(fetch(`${sandbox.url}/`)).rejects.toThrow();
    await new Promise<void>((resolve, reject) => {
      const probe = createServer();
      probe.once('error', reject);
      probe.listen(port, '127.0.0.1', () => probe.close(() => resolve()));
    });
  });
});

/** Assertions built here with node:crypto alone, as any private_key_jwt client would: the sandbox is the oracle. */
describe('LimitRail sandbox: private_key_jwt', () => {
  let sandbox: Sandbox;
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwkOf = (key: KeyObject, kid: string) => ({ ...key.export({ format: 'jwk' }), kid });
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const nowSec = () => Math.floor(Date.now() / 1000);

  const assertion = (
    claims: Record<string, unknown> = {},
    { key = rsa.privateKey, alg = 'RS256', kid = 'rsa-1' }: { key?: KeyObject; alg?: string; kid?: string } = {},
  ) => {
    const input = `${b64({ alg, typ: 'JWT', kid })}.${b64({
      iss: 'lr_jwt',
      sub: 'lr_jwt',
      aud: sandbox.tokenUrl,
      iat: nowSec(),
      exp: nowSec() + 60,
      jti: randomUUID(),
      ...claims,
    })}`;
    const signature =
      alg === 'ES256'
        ? sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' })
        : alg === 'PS256'
          ? sign('sha256', Buffer.from(input), { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 })
          : sign('sha256', Buffer.from(input), key);
    return `${input}.${signature.toString('base64url')}`;
  };
  const request = (jwt: string, extra: Record<string, string> = {}, headers: Record<string, string> = {}) =>
    post(
      sandbox.tokenUrl,
      {
        grant_type: 'client_credentials',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: jwt,
        scope: 'limitrail.usage.read',
        ...extra,
      },
      headers,
    );

  beforeAll(async () => {
    sandbox = await startSandbox();
    sandbox.registerAssertionClient({
      clientId: 'lr_jwt',
      jwks: { keys: [jwkOf(rsa.publicKey, 'rsa-1'), jwkOf(ec.publicKey, 'ec-1')] },
      scopes: ['limitrail.usage.read'],
    });
  });
  afterAll(async () => sandbox?.stop());

  it.each([
    ['RS256', rsa.privateKey, 'rsa-1'],
    ['PS256', rsa.privateKey, 'rsa-1'],
    ['ES256', ec.privateKey, 'ec-1'],
  ] as const)(
    'issues a token for a %s assertion by a registered key, with or without client_id',
    async (alg, key, kid) => {
      const reply = await request(assertion({}, { key, alg, kid }), { client_id: 'lr_jwt' });
      expect(reply.status).toBe(200);
      expect(decodeJwtPart(String(reply.json?.access_token).split('.')[1])).toMatchObject({ client_id: 'lr_jwt' });
      expect((await request(assertion({}, { key, alg, kid }))).status).toBe(200);
    },
  );

  it('refuses a replayed assertion', async () => {
    const jwt = assertion();
    expect((await request(jwt)).status).toBe(200);
    expect(await request(jwt)).toMatchObject({ status: 401, json: { errorCode: 'invalid_client' } });
  });

  it.each([
    ['another audience', { aud: 'https://elsewhere.example/token' }, {}],
    ['an expired assertion', { iat: 1_700_000_000, exp: 1_700_000_060 }, {}],
    ['a lifetime over 300 s', { exp: Math.floor(Date.now() / 1000) + 400 }, {}],
    ['iss not sub', { sub: 'someone-else' }, {}],
    ['an unknown client', { iss: 'lr_nobody', sub: 'lr_nobody' }, {}],
    ['no jti', { jti: undefined }, {}],
    ['an unregistered key', {}, { key: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey }],
    ['a kid naming another key', {}, { kid: 'ec-1' }],
    ['ES256 signed by the RSA key', {}, { alg: 'ES256' }],
  ])('refuses %s as invalid_client (401)', async (_name, claims, options) => {
    const reply = await request(assertion(claims, options));
    expect(reply).toMatchObject({ status: 401, json: { errorCode: 'invalid_client' } });
  });

  it('refuses a malformed request: a wrong assertion type, a second method, a client_id that is not the issuer', async () => {
    const jwt = assertion();
    expect((await request(jwt, { client_assertion_type: 'jwt' })).json).toMatchObject({
      status: 400,
      field: 'client_assertion_type',
    });
    expect((await request(jwt, { client_secret: 'x' })).json).toMatchObject({ status: 400, field: 'client_assertion' });
    expect((await request(jwt, {}, { authorization: 'Basic bHJfand0Ong=' })).json).toMatchObject({ status: 400 });
    expect((await request(jwt, { client_id: 'lr_other' })).json).toMatchObject({ status: 400, field: 'client_id' });
    expect((await request('not.a.jwt')).json).toMatchObject({ status: 400, field: 'client_assertion' });
  });

  it('verifies with the registered keys only, from the moment they change (a rotation)', async () => {
    const next = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const byNext = () => assertion({}, { key: next.privateKey, alg: 'ES256', kid: 'ec-2' });
    expect((await request(byNext())).status).toBe(401);
    sandbox.setClientJwks('lr_jwt', { keys: [jwkOf(ec.publicKey, 'ec-1'), jwkOf(next.publicKey, 'ec-2')] });
    expect((await request(byNext())).status).toBe(200);
    expect((await request(assertion({}, { key: ec.privateKey, alg: 'ES256', kid: 'ec-1' }))).status).toBe(200);
    sandbox.setClientJwks('lr_jwt', { keys: [jwkOf(next.publicKey, 'ec-2')] });
    expect((await request(assertion({}, { key: ec.privateKey, alg: 'ES256', kid: 'ec-1' }))).status).toBe(401);
  });
});
