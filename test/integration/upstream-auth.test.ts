import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { TABLE_PARTITION_KEY } from '../../functions/lib/cache/table/table-schema';
import { cacheKeyFor } from '../../functions/lib/domain/cache-key';
import { recording, type SentCommand } from '../support/infra/code-calls';
import { type Container, startContainer } from '../support/process/container';
import { ensureSigningKey, setupLocalAws } from '../support/stacks/aws-setup';
import { awsEnv, inProcessContainer, REGION } from '../support/stacks/broker-stack';
import { type MotoServer, startMoto } from '../support/stacks/moto';
import { type OidcServer, startOidcServer } from '../support/stacks/oidc-server';

/**
 * Upstream client authentication against a real OAuth server that checks what it receives (oidc-provider 9.x),
 * with moto's KMS holding the signing keys and the broker in process (its own runtime and AWS clients per
 * container; the stampede case runs the built bundle in OS processes):
 *   - client_secret_basic with a server that accepts only that method: Basic served, the same secret in the form body
 *     refused, an id and a secret containing `:` and `%` (RFC 6749 2.3.1 form-urlencoding);
 *   - private_key_jwt with an RS256 and an ES256 key, the server knowing only the JWK Set `npm run jwks` printed: a
 *     token without any Secrets Manager call, the assertion's claims as the issue asks, a replayed assertion refused,
 *     a key the server does not know refused once (no retries) and logged by client and method, a disabled key;
 *   - tokenParams: audience and resource reach the server and split the cache, a client without them keeps its key;
 *   - one upstream request for a cold key across containers;
 *   - no assertion, secret or token in any log line.
 */
const SCOPES = ['limitrail.accounts.read', 'limitrail.usage.read', 'limitrail.usage.write'];
/** An id and a secret that only survive RFC 6749 2.3.1's encoding (a raw `:` splits Basic credentials wrongly). */
const BASIC_ID = 'partner:basic%20id';
const BASIC_SECRET = 's3cr:et%2F+/with:colons%';
const RESOURCE_A = 'https://a.example/';
const RESOURCE_B = 'https://b.example/';
const AUDIENCE = 'https://api.example.com';
const TABLE = 'tokens-upstream-auth';

type Answer = Record<string, unknown>;
type Jwk = Record<string, unknown> & { kid: string; alg: string };

const decodePart = (part: string | undefined): Record<string, unknown> =>
  JSON.parse(Buffer.from(part ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;

/** `npm run jwks` as an operator runs it, against moto's KMS: the JWK Set it prints. */
const npmRunJwks = async (endpoint: string, keyIds: string[]): Promise<{ keys: Jwk[] }> => {
  const { stdout } = await promisify(execFile)(
    'npm',
    ['run', '--silent', 'jwks', '--', ...keyIds.flatMap((k) => ['--key', k])],
    { env: { ...process.env, ...awsEnv(endpoint) }, timeout: 60_000 },
  );
  return JSON.parse(stdout) as { keys: Jwk[] };
};

/** A pass-through in front of the token endpoint that keeps every client assertion the broker sends. */
const startRecordingProxy = async (target: string) => {
  const assertions: string[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const assertion = new URLSearchParams(body).get('client_assertion');
      if (assertion) assertions.push(assertion);
      const answer = await fetch(target, {
        method: 'POST',
        headers: { 'content-type': String(req.headers['content-type']) },
        body,
      });
      res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/json' });
      res.end(await answer.text());
    });
  });
  await new Promise<void>((ready) => server.listen(0, '127.0.0.1', ready));
  return {
    tokenUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`,
    assertions,
    stop: () => new Promise<void>((done) => server.close(() => done())),
  };
};

/**
 * KMS as the broker sees it when it refuses or throttles Sign: a pass-through to moto that answers Sign with KMS's
 * own error shape while a fault is set (moto signs with a disabled key, and never throttles).
 */
const startKmsFaults = async (moto: string) => {
  let fault: { type: 'DisabledException' | 'ThrottlingException'; times: number } | undefined;
  let signs = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      if (req.headers['x-amz-target'] === 'TrentService.Sign') {
        signs += 1;
        if (fault && fault.times > 0) {
          fault.times -= 1;
          res.writeHead(400, { 'content-type': 'application/x-amz-json-1.1' });
          res.end(JSON.stringify({ __type: fault.type, message: `injected ${fault.type}` }));
          return;
        }
      }
      const headers = Object.fromEntries(
        Object.entries(req.headers).filter(([k]) => !['host', 'content-length', 'connection'].includes(k)),
      ) as Record<string, string>;
      const answer = await fetch(`${moto}${req.url}`, { method: req.method, headers, body: Buffer.concat(chunks) });
      res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/json' });
      res.end(Buffer.from(await answer.arrayBuffer()));
    });
  });
  await new Promise<void>((ready) => server.listen(0, '127.0.0.1', ready));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    failSign: (type: 'DisabledException' | 'ThrottlingException', times: number) => {
      fault = { type, times };
    },
    signs: () => signs,
    stop: () => new Promise<void>((done) => server.close(() => done())),
  };
};

describe('upstream client authentication against oidc-provider', () => {
  let moto: MotoServer;
  let basicOnly: OidcServer;
  let jwtServer: OidcServer;
  let proxy: Awaited<ReturnType<typeof startRecordingProxy>>;
  let kmsFaults: Awaited<ReturnType<typeof startKmsFaults>>;
  let env: Record<string, string>;
  const keys: Record<'rsa' | 'ec' | 'spare', string> = { rsa: '', ec: '', spare: '' };
  let jwks: { keys: Jwk[] };
  const logs: string[] = [];
  const handedOut: string[] = [];
  const sent: SentCommand[] = [];
  const made: { destroy(): void }[] = [];

  /**
   * A new in-process container whose Secrets Manager and KMS commands are recorded in `sent`; its KMS behind the
   * fault injector when asked. maxAttempts 2, as the runtime's own clients (runtime.ts).
   */
  const container = (kmsEndpoint?: string) => {
    const config = { endpoint: moto.endpoint, region: REGION, credentials: { accessKeyId: 't', secretAccessKey: 't' } };
    const secretsManager = recording(new SecretsManagerClient(config), 'secretsmanager', sent);
    const kms = new KMSClient({ ...config, endpoint: kmsEndpoint ?? moto.endpoint, maxAttempts: 2 });
    const kmsClient = recording(kms, 'kms', sent);
    const dynamodb = new DynamoDBClient(config);
    made.push(secretsManager, kmsClient, dynamodb);
    const invoke = inProcessContainer(env, logs, { secretsManager, kms: kmsClient, dynamodb });
    return async (event: Answer): Promise<Answer> => {
      const answer = await invoke(event);
      if (typeof answer.access_token === 'string') handedOut.push(answer.access_token);
      return answer;
    };
  };
  const commands = (service: SentCommand['service'], from = 0) =>
    sent
      .slice(from)
      .filter((c) => c.service === service)
      .map((c) => c.command);

  beforeAll(async () => {
    moto = await startMoto();
    const signingKey = (alias: string, keySpec: 'RSA_2048' | 'ECC_NIST_P256') =>
      ensureSigningKey({ endpoint: moto.endpoint, region: REGION, alias: `alias/${alias}`, keySpec });
    [keys.rsa, keys.ec, keys.spare] = await Promise.all([
      signingKey('upstream-rsa', 'RSA_2048'),
      signingKey('upstream-ec', 'ECC_NIST_P256'),
      signingKey('upstream-spare', 'ECC_NIST_P256'),
    ]);
    jwks = await npmRunJwks(moto.endpoint, [keys.rsa, keys.ec, keys.spare]);
    const [rsaJwk, ecJwk, spareJwk] = jwks.keys;
    const { kmsKeyId } = await setupLocalAws({
      endpoint: moto.endpoint,
      region: REGION,
      tableName: TABLE,
      secretId: 'partner/basic',
      secretValue: { client_id: BASIC_ID, client_secret: BASIC_SECRET },
    });
    [basicOnly, jwtServer] = await Promise.all([
      startOidcServer({
        scopes: SCOPES,
        clientAuthMethods: ['client_secret_basic'],
        clients: [{ clientId: BASIC_ID, clientSecret: BASIC_SECRET, authMethod: 'client_secret_basic' }],
      }),
      startOidcServer({
        scopes: SCOPES,
        accessTokenTtlSec: 1800,
        resources: [RESOURCE_A, RESOURCE_B],
        clients: [
          { clientId: 'broker-rs256', authMethod: 'private_key_jwt', jwks: { keys: [rsaJwk!] }, signingAlg: 'RS256' },
          // Two keys: the one in use and the spare a rotation would move to.
          { clientId: 'broker-es256', authMethod: 'private_key_jwt', jwks: { keys: [ecJwk!, spareJwk!] } },
        ],
      }),
    ]);
    proxy = await startRecordingProxy(jwtServer.tokenUrl);
    kmsFaults = await startKmsFaults(moto.endpoint);
    const jwt = (clientId: string, signingKeyId: string | string[], more: Answer = {}) => ({
      authMethod: 'private_key_jwt',
      clientId,
      signingKeyId,
      tokenUrl: jwtServer.tokenUrl,
      scopes: SCOPES,
      ...more,
    });
    env = {
      ...awsEnv(moto.endpoint),
      CALLER_AUTH: 'invoke-permission', // the upstream side is under test here; identity.test.ts proves callers
      ALLOW_LOOPBACK_TOKEN_URL: 'true',
      TOKEN_TABLE_NAME: TABLE,
      TOKEN_KMS_KEY_ID: kmsKeyId,
      FORCE_REFRESH_MIN_INTERVAL_SEC: '0', // a forced refresh always fetches (the disabled-key case)
      BROKER_CLIENTS: JSON.stringify({
        basic: {
          authMethod: 'client_secret_basic',
          secretId: 'partner/basic',
          clientId: BASIC_ID,
          tokenUrl: basicOnly.tokenUrl,
          scopes: SCOPES,
        },
        basicAsPost: { secretId: 'partner/basic', tokenUrl: basicOnly.tokenUrl, scopes: SCOPES },
        // Through the recording proxy: the assertion's audience is the server's token endpoint, not the proxy.
        rs256: jwt('broker-rs256', keys.rsa, { tokenUrl: proxy.tokenUrl, assertionAudience: jwtServer.tokenUrl }),
        es256: jwt('broker-es256', [keys.ec]),
        apiA: jwt('broker-es256', keys.ec, { tokenParams: { audience: AUDIENCE, resource: [RESOURCE_A] } }),
        apiB: jwt('broker-es256', keys.ec, { tokenParams: { resource: [RESOURCE_B] } }),
        unregisteredKey: jwt('broker-rs256', keys.ec, { signingAlgorithm: 'ES256' }),
        // Signs with the first key, the spare, which the server knows too.
        spareFirst: jwt('broker-es256', [keys.spare, keys.ec]),
      }),
    };
  }, 120_000);

  afterAll(async () => {
    for (const c of made) c.destroy();
    await Promise.allSettled([kmsFaults?.stop(), proxy?.stop(), basicOnly?.stop(), jwtServer?.stop(), moto?.stop()]);
  });

  it('prints a JWK Set with kid, alg and use for each key, in the order given (npm run jwks)', () => {
    expect(jwks.keys.map((k) => [k.kty, k.alg, k.use])).toEqual([
      ['RSA', 'RS256', 'sig'],
      ['EC', 'ES256', 'sig'],
      ['EC', 'ES256', 'sig'],
    ]);
    expect(new Set(jwks.keys.map((k) => k.kid)).size).toBe(3);
    expect(JSON.stringify(jwks)).not.toMatch(/"d"/); // public keys only
  });

  describe('client_secret_basic, with a server that accepts nothing else', () => {
    it('is served, with an id and a secret containing ":" and "%"', async () => {
      const answer = await container()({ client: 'basic', scopes: ['limitrail.usage.read'] });
      expect(answer).toMatchObject({ token_type: 'Bearer', client: 'basic', scope: 'limitrail.usage.read' });
      expect(basicOnly.received().at(-1)).toMatchObject({ status: 200, presented: 'basic', clientId: BASIC_ID });
    });

    it('refuses the same secret sent in the form body (client_secret_post): a clear server_error, one request', async () => {
      const before = basicOnly.tokenRequests();
      // Another scope set than the Basic client's: a token in the cache would answer without asking the server.
      const answer = await container()({ client: 'basicAsPost', scopes: ['limitrail.usage.write'] });
      expect(answer).toMatchObject({ error: 'server_error', status: 502 });
      expect(answer.error_description).toMatch(
        /rejected the client credentials in secret "partner\/basic" \(invalid_client, HTTP 401/,
      );
      expect(basicOnly.tokenRequests() - before).toBe(1);
      expect(basicOnly.received().at(-1)).toMatchObject({ status: 401, presented: 'post', error: 'invalid_client' });
    });
  });

  describe.each([
    ['RS256', 'rs256', 'broker-rs256', 0],
    ['ES256', 'es256', 'broker-es256', 1],
  ] as const)('private_key_jwt, %s key in KMS', (alg, client, clientId, jwkIndex) => {
    it('gets a token with an assertion the server verified with the published key, without any Secrets Manager call', async () => {
      const from = sent.length;
      const answer = await container()({ client, scopes: SCOPES });
      expect(answer).toMatchObject({ token_type: 'Bearer', client, scope: SCOPES.join(' ') });
      expect(jwtServer.received().at(-1)).toMatchObject({ status: 200, presented: 'assertion', clientId });
      expect(commands('secretsmanager', from)).toEqual([]);
      expect(commands('kms', from)).toEqual(expect.arrayContaining(['GetPublicKey', 'Sign']));
      const sign = sent.slice(from).find((c) => c.command === 'Sign')!.input;
      expect(sign).toMatchObject({
        MessageType: 'RAW',
        SigningAlgorithm: alg === 'RS256' ? 'RSASSA_PKCS1_V1_5_SHA_256' : 'ECDSA_SHA_256',
      });
      expect(jwks.keys[jwkIndex]!.alg).toBe(alg);
    });
  });

  it('sends assertions with iss = sub = client id, the audience, exp at most 300 s after iat, the kid of the JWK, a new jti each', async () => {
    const invoke = container();
    await invoke({ client: 'rs256', scopes: ['limitrail.usage.read'] });
    await invoke({ client: 'rs256', scopes: ['limitrail.usage.write'] });
    expect(proxy.assertions.length).toBeGreaterThanOrEqual(2);
    const decoded = proxy.assertions.map((a) => ({
      header: decodePart(a.split('.')[0]),
      claims: decodePart(a.split('.')[1]),
    }));
    for (const { header, claims } of decoded) {
      expect(header).toEqual({ alg: 'RS256', typ: 'JWT', kid: jwks.keys[0]!.kid });
      expect(claims).toMatchObject({ iss: 'broker-rs256', sub: 'broker-rs256', aud: jwtServer.tokenUrl });
      const { iat, exp } = claims as { iat: number; exp: number };
      expect(exp - iat).toBeGreaterThan(0);
      expect(exp - iat).toBeLessThanOrEqual(300);
    }
    expect(new Set(decoded.map((d) => d.claims.jti)).size).toBe(decoded.length);
  });

  it('has its replayed assertion refused by the server', async () => {
    const assertion = proxy.assertions.at(-1)!;
    const replay = await fetch(jwtServer.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_id: 'broker-rs256',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: assertion,
        scope: 'limitrail.usage.write',
      }),
    });
    expect(replay.status).toBe(401);
    expect(((await replay.json()) as Answer).error).toBe('invalid_client');
  });

  it('signs with the first of several keys', async () => {
    await container()({ client: 'spareFirst', scopes: ['limitrail.usage.write'] });
    const last = sent.filter((c) => c.command === 'Sign').at(-1)!;
    expect(String(last.input.KeyId)).toBe(keys.spare.split('/').pop());
    expect(jwtServer.received().at(-1)).toMatchObject({ status: 200, clientId: 'broker-es256' });
  });

  it('answers a key the server does not know with one request, a clear refusal and a log line naming client and method', async () => {
    const before = jwtServer.tokenRequests();
    const answer = await container()({ client: 'unregisteredKey', scopes: SCOPES });
    expect(answer).toMatchObject({ error: 'server_error', status: 502 });
    expect(answer.error_description).toMatch(
      /^the token endpoint rejected the client assertion \(private_key_jwt\) of client "unregisteredKey" signed by key "arn:aws:kms:[^"]+" \(invalid_client, HTTP 401/,
    );
    expect(jwtServer.tokenRequests() - before).toBe(1);
    const line = logs
      .map((l) => JSON.parse(l) as Answer)
      .find((l) => l.message === 'token endpoint rejected the client authentication');
    expect(line).toMatchObject({ client: 'unregisteredKey', authMethod: 'private_key_jwt', kid: jwks.keys[1]!.kid });
  });

  describe('tokenParams', () => {
    it('sends audience and resource with every request and keeps one cached token per set of them', async () => {
      const invoke = container();
      const before = jwtServer.tokenRequests();
      const plain = await invoke({ client: 'es256', scopes: ['limitrail.usage.read'] });
      const a = await invoke({ client: 'apiA', scopes: ['limitrail.usage.read'] });
      const b = await invoke({ client: 'apiB', scopes: ['limitrail.usage.read'] });
      expect(
        jwtServer
          .received()
          .slice(-3)
          .map((r) => [r.status, r.audience, r.resource]),
      ).toEqual([
        [200, undefined, []],
        [200, AUDIENCE, [RESOURCE_A]],
        [200, undefined, [RESOURCE_B]],
      ]);
      expect(new Set([plain.access_token, a.access_token, b.access_token]).size).toBe(3);
      // A resource's token is a JWT for that resource (oidc-provider's resource indicators).
      expect(decodePart(String(a.access_token).split('.')[1]).aud).toBe(RESOURCE_A);
      expect(decodePart(String(b.access_token).split('.')[1]).aud).toBe(RESOURCE_B);
      // Repeats, from another container too: the table answers each from its own key.
      for (const [name, token] of [
        ['es256', plain],
        ['apiA', a],
        ['apiB', b],
      ] as const) {
        expect((await container()({ client: name, scopes: ['limitrail.usage.read'] })).access_token).toBe(
          token.access_token,
        );
      }
      expect(jwtServer.tokenRequests() - before).toBe(3);
    });

    it('keys a client without them exactly as before they existed (a deploy keeps the cache)', async () => {
      const dynamodb = new DynamoDBClient({
        endpoint: moto.endpoint,
        region: REGION,
        credentials: { accessKeyId: 't', secretAccessKey: 't' },
      });
      const { Items = [] } = await dynamodb.send(new ScanCommand({ TableName: TABLE, ConsistentRead: true }));
      dynamodb.destroy();
      const stored = Items.map((item) => item[TABLE_PARTITION_KEY]?.S);
      // The key as the broker computed it before tokenParams existed: three parts, hashed.
      const before = (url: string, clientId: string, scopes: string[]) =>
        `v1:${createHash('sha256')
          .update(JSON.stringify([url, clientId, scopes]))
          .digest('hex')}`;
      expect(stored).toContain(before(jwtServer.tokenUrl, 'broker-es256', ['limitrail.usage.read']));
      expect(stored).toContain(
        cacheKeyFor(jwtServer.tokenUrl, 'broker-es256', ['limitrail.usage.read'], { resource: [RESOURCE_B] }),
      );
    });
  });

  describe('KMS Sign failing (the rules of a Secrets Manager failure)', () => {
    it('retries a throttled Sign within the deadline and serves the token, counting the signing error', async () => {
      kmsFaults.failSign('ThrottlingException', 2); // the SDK's own retry gets the second; the broker's loop retries
      const [signsBefore, before, mark] = [kmsFaults.signs(), jwtServer.tokenRequests(), logs.length];
      const answer = await container(kmsFaults.endpoint)({
        client: 'es256',
        scopes: ['limitrail.usage.write', 'limitrail.accounts.read'],
      });
      expect(answer).toMatchObject({ token_type: 'Bearer' });
      expect(kmsFaults.signs() - signsBefore).toBe(3);
      expect(jwtServer.tokenRequests() - before).toBe(1);
      const lines = logs.slice(mark).map((l) => JSON.parse(l) as Answer);
      expect(lines.find((l) => l.message === 'token request failed, retrying')).toMatchObject({
        reason: 'signing_unavailable',
        attempt: 1,
      });
      expect(lines.find((l) => typeof l.SigningErrors === 'number')).toMatchObject({
        SigningErrors: 1,
        'SigningError.signing_unavailable': 1,
        AssertionsSigned: 1,
      });
    });

    it('serves a still-valid cached token as stale while KMS refuses the key (disabled), 503 where none is cached, without retrying', async () => {
      kmsFaults.failSign('DisabledException', 100);
      const [signsBefore, before, mark] = [kmsFaults.signs(), jwtServer.tokenRequests(), logs.length];
      const invoke = container(kmsFaults.endpoint);
      // Cached by the tokenParams test; a forced refresh must sign.
      const forced = await invoke({ client: 'es256', scopes: ['limitrail.usage.read'], forceRefresh: true });
      expect(forced).toMatchObject({ token_type: 'Bearer', stale: true });
      const none = await invoke({ client: 'es256', scopes: ['limitrail.accounts.read', 'limitrail.usage.read'] });
      expect(none).toMatchObject({ error: 'temporarily_unavailable', status: 503 });
      expect(none.error_description).toMatch(
        /^KMS refused Sign with signing key "[^"]+": DisabledException \(HTTP 400\)$/,
      );
      expect(kmsFaults.signs() - signsBefore).toBe(2); // one each: a refusal is not retried
      expect(jwtServer.tokenRequests() - before).toBe(0);
      kmsFaults.failSign('DisabledException', 0);
      const lines = logs.slice(mark).map((l) => JSON.parse(l) as Answer);
      expect(lines.filter((l) => l.degraded === 'stale_answer')).toMatchObject([{ reason: 'signing_key_unusable' }]);
      expect(lines.filter((l) => l.audit === 'refused')).toMatchObject([
        { reason: 'signing_key_unusable', status: 503 },
      ]);
      const emf = lines.filter((l) => typeof l.SigningErrors === 'number');
      expect(emf.map((l) => l['SigningError.signing_key_unusable'])).toEqual([1, 1]);
    });
  });

  describe('single flight across containers (built bundle, OS processes)', () => {
    const fleet: Container[] = [];
    afterAll(async () => {
      await Promise.allSettled(fleet.map((c) => c.stop()));
      logs.push(
        ...fleet.flatMap((c) =>
          c
            .logs()
            .split('\n')
            .filter((l) => l.startsWith('{')),
        ),
      );
    });

    it('makes one upstream request for 12 concurrent cold requests across 3 processes', async () => {
      if (!existsSync('dist/token/handler.js'))
        throw new Error('dist/token/handler.js is missing: run `npm run build`');
      fleet.push(...(await Promise.all(Array.from({ length: 3 }, () => startContainer('token', env)))));
      jwtServer.setDelayMs(300); // widen the race window
      const before = jwtServer.tokenRequests();
      const answers = (await Promise.all(
        fleet.flatMap((c) =>
          Array.from({ length: 4 }, () => c.invoke({ client: 'es256', scopes: ['limitrail.accounts.read'] })),
        ),
      )) as Answer[];
      jwtServer.setDelayMs(0);
      expect(answers.map((a) => a.error)).toEqual(Array(12).fill(undefined));
      expect(new Set(answers.map((a) => a.access_token)).size).toBe(1);
      expect(jwtServer.tokenRequests() - before).toBe(1);
      handedOut.push(String(answers[0]!.access_token));
    });
  });

  describe('logs', () => {
    it('contain no assertion, no client secret and no token', () => {
      const text = logs.join('\n');
      expect(text).toContain('"message":"token served"');
      expect(proxy.assertions.length).toBeGreaterThan(0);
      for (const assertion of proxy.assertions) {
        expect(text).not.toContain(assertion);
        expect(text).not.toContain(assertion.split('.')[2]!); // not even the signature
      }
      expect(text).not.toContain(BASIC_SECRET);
      expect(text).not.toContain(encodeURIComponent(BASIC_SECRET));
      expect(handedOut.length).toBeGreaterThan(5);
      for (const token of handedOut) expect(text).not.toContain(token);
    });
  });
});
