/**
 * LimitRail sandbox: a real local token server following the `POST /connect/token` contract
 * (client_credentials, form-encoded, ProblemDetails errors). Binds to 127.0.0.1 only. Clients authenticate with a
 * secret (client_secret_post or client_secret_basic) or, once registered with a JWK Set, with a client assertion
 * (private_key_jwt, checked by sandbox-assertions.ts).
 *
 * Deliberately independent of the broker's code (no imports from functions/): it is the oracle
 * the broker is tested against, so it must not share the broker's bugs.
 */
import { createHash, createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { checkClientAssertion, type JwkSet, SeenAssertions } from './sandbox-assertions';

export const DEFAULT_SANDBOX_CLIENT_ID = 'lr_cdadc4d7359a489ca5a2bd3fc9cb0202';
export const DEFAULT_SANDBOX_SCOPES = [
  'limitrail.usage.read',
  'limitrail.usage.write',
  'limitrail.accounts.read',
  'limitrail.runtime.read',
];

export interface SandboxClient {
  clientId: string;
  clientSecret: string;
  scopes: string[];
  tokenLifetimeSec?: number;
}
/** A private_key_jwt client: authenticated by assertions signed by a key of its JWK Set (no secret). */
export interface SandboxAssertionClient {
  clientId: string;
  jwks: JwkSet;
  scopes: string[];
  tokenLifetimeSec?: number;
}
export interface SandboxOptions {
  port?: number;
  clients?: SandboxClient[];
  tokenLifetimeSec?: number;
  log?: (line: string) => void;
}
export interface SandboxFault {
  status: number;
  body: string;
  headers?: Record<string, string>;
  delayMs?: number;
}
export interface SandboxStats {
  requests: number;
  tokenRequests: number;
  tokensIssued: number;
  byScope: Record<string, number>;
}
export interface Sandbox {
  url: string;
  tokenUrl: string;
  port: number;
  clients: SandboxClient[];
  stats(): SandboxStats;
  resetStats(): void;
  setDelayMs(ms: number): void;
  queueFaults(...faults: SandboxFault[]): void;
  /**
   * The secrets the client is accepted with from now on, for rotation tests: `[old, new]` while both work (the
   * endpoint's grace period), `[new]` once the old one is revoked.
   */
  setClientSecrets(clientId: string, secrets: string[]): void;
  /**
   * Scopes granted on top of what each request asks (some servers add a client's default scopes): the endpoint
   * answers a broader `scope` than requested. Empty (the default) grants exactly what was asked.
   */
  setExtraGrantedScopes(scopes: string[]): void;
  /** Registers a private_key_jwt client (its id may not be a secret client's). */
  registerAssertionClient(client: SandboxAssertionClient): void;
  /** The keys a private_key_jwt client's assertions are verified with from now on (a key rotation). */
  setClientJwks(clientId: string, jwks: JwkSet): void;
  stop(): Promise<void>;
}

const TOKEN_PATH = '/connect/token';
const MAX_BODY_BYTES = 16 * 1024;
/** An oversized body is drained (so the client reads the 413 instead of a reset) up to this, then the socket is cut. */
const MAX_DRAIN_BYTES = 1024 * 1024;
const DEFAULT_TOKEN_LIFETIME_SEC = 3600;
/** RFC 6749 section 3.3 scope-token. */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;
/** Per-process HS256 key: tokens look real (`eyJhbGci...`) but are only meaningful to this process. */
const signingKey = randomBytes(32);

const PROBLEM_TYPES: Record<number, string> = {
  400: 'https://tools.ietf.org/html/rfc9110#section-15.5.1',
  401: 'https://tools.ietf.org/html/rfc9110#section-15.5.2',
  404: 'https://tools.ietf.org/html/rfc9110#section-15.5.5',
  405: 'https://tools.ietf.org/html/rfc9110#section-15.5.6',
  413: 'https://tools.ietf.org/html/rfc9110#section-15.5.14',
  500: 'https://tools.ietf.org/html/rfc9110#section-15.6.1',
};

class Problem extends Error {
  constructor(
    readonly status: number,
    readonly errorCode: string,
    readonly resourceKey: string,
    readonly title: string,
    readonly field?: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(title);
  }
}

const invalidRequest = (field: string | undefined, title: string, headers?: Record<string, string>) =>
  new Problem(400, 'invalid_request', 'auth.token.invalid_request', title, field, headers);

/** Who a request authenticated as: what its scopes and token lifetime come from. */
type Authenticated = Pick<SandboxClient, 'clientId' | 'scopes' | 'tokenLifetimeSec'>;

interface Issued {
  clientId: string;
  scope: string;
  body: Record<string, unknown>;
}

const secretDigest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest();
/** Constant-time: both sides hashed to a fixed length first, so not even the length leaks. */
const secretsEqual = (given: string, expected: string): boolean =>
  timingSafeEqual(secretDigest(given), secretDigest(expected));
const UNKNOWN_CLIENT_SECRET = randomBytes(32).toString('base64url');

function signJwt(claims: Record<string, unknown>): string {
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
  const input = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode(claims)}`;
  return `${input}.${createHmac('sha256', signingKey).update(input).digest('base64url')}`;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let sizeBytes = 0;
    const tooLarge = () =>
      new Problem(413, 'invalid_request', 'auth.token.body_too_large', `Request body exceeds ${MAX_BODY_BYTES} bytes`);
    req.on('data', (chunk: Buffer) => {
      sizeBytes += chunk.length;
      if (sizeBytes > MAX_DRAIN_BYTES) {
        reject(tooLarge());
        req.destroy();
      } else if (sizeBytes <= MAX_BODY_BYTES) {
        chunks.push(chunk);
      }
    });
    req.on('end', () => (sizeBytes > MAX_BODY_BYTES ? reject(tooLarge()) : resolve(Buffer.concat(chunks))));
    req.on('error', reject);
    req.on('close', () => reject(new Error('request closed before its body ended')));
  });
}

/** Exactly one value, or absent; a repeated parameter is invalid (RFC 6749 section 3.2). */
function single(form: URLSearchParams, name: string): string | undefined {
  const values = form.getAll(name);
  if (values.length > 1) throw invalidRequest(name, `Parameter ${name} must not be repeated`);
  return values[0] === '' ? undefined : values[0];
}

function formDecode(value: string): string {
  return decodeURIComponent(value.replace(/\+/g, ' '));
}

/** RFC 6749 section 2.3.1: Basic credentials, each part form-urlencoded before base64. */
function basicCredentials(header: string | undefined): { clientId: string; clientSecret: string } | undefined {
  if (header === undefined) return undefined;
  const challenge = { 'WWW-Authenticate': 'Basic realm="limitrail"' };
  const match = /^Basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(header);
  if (!match) {
    if (/^Basic\b/i.test(header)) throw invalidRequest('Authorization', 'Malformed Basic credentials', challenge);
    throw new Problem(
      401,
      'invalid_client',
      'auth.token.invalid_client',
      'Unsupported client authentication method',
      undefined,
      challenge,
    );
  }
  const decoded = Buffer.from(match[1] ?? '', 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) throw invalidRequest('Authorization', 'Malformed Basic credentials', challenge);
  try {
    return { clientId: formDecode(decoded.slice(0, colon)), clientSecret: formDecode(decoded.slice(colon + 1)) };
  } catch {
    throw invalidRequest('Authorization', 'Malformed Basic credentials', challenge);
  }
}

function effectiveClients(options: SandboxOptions): SandboxClient[] {
  const clients = options.clients ?? [
    {
      clientId: DEFAULT_SANDBOX_CLIENT_ID,
      clientSecret: randomBytes(32).toString('base64url'),
      scopes: [...DEFAULT_SANDBOX_SCOPES],
    },
  ];
  const seen = new Set<string>();
  return clients.map((client, i) => {
    if (!client.clientId || !client.clientSecret) throw new Error(`clients[${i}] needs a clientId and a clientSecret`);
    if (seen.has(client.clientId)) throw new Error(`clients[${i}].clientId is a duplicate`);
    seen.add(client.clientId);
    const bad = client.scopes.find((s) => !SCOPE_TOKEN.test(s));
    if (bad !== undefined) throw new Error(`clients[${i}].scopes has an invalid scope token`);
    assertLifetime(client.tokenLifetimeSec, `clients[${i}].tokenLifetimeSec`);
    return { ...client, scopes: [...client.scopes] };
  });
}

function assertLifetime(value: number | undefined, name: string): void {
  if (value !== undefined && (!Number.isInteger(value) || value <= 0))
    throw new Error(`${name} must be a positive integer`);
}

export async function startSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  assertLifetime(options.tokenLifetimeSec, 'tokenLifetimeSec');
  const clients = effectiveClients(options);
  const clientsById = new Map(clients.map((c) => [c.clientId, c]));
  /** Extra accepted secrets per client while a rotation overlaps (see setClientSecrets). */
  const acceptedSecrets = new Map<string, string[]>(clients.map((c) => [c.clientId, [c.clientSecret]]));
  const assertionClients = new Map<string, SandboxAssertionClient>();
  const seenAssertions = new SeenAssertions();
  const defaultLifetimeSec = options.tokenLifetimeSec ?? DEFAULT_TOKEN_LIFETIME_SEC;
  const log = options.log ?? (() => {});
  const faults: SandboxFault[] = [];
  let extraGranted: string[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let delayMs = 0;
  let url = '';
  let stats: SandboxStats = { requests: 0, tokenRequests: 0, tokensIssued: 0, byScope: {} };

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (ms <= 0) return resolve();
      const timer = setTimeout(() => {
        timers.delete(timer);
        resolve();
      }, ms);
      timers.add(timer);
    });

  /** The scope parameter: space-separated scope tokens, required. */
  function requestedScopes(form: URLSearchParams): string[] {
    const scopeParam = single(form, 'scope');
    if (scopeParam === undefined) throw invalidRequest('scope', 'Parameter scope is required');
    const requested = scopeParam.split(' ').filter((s) => s !== '');
    if (requested.length === 0 || !requested.every((s) => SCOPE_TOKEN.test(s)))
      throw invalidRequest('scope', 'Parameter scope must be space-separated scope tokens');
    return requested;
  }

  /** client_secret_post or client_secret_basic. */
  function bySecret(
    form: URLSearchParams,
    authorization: string | undefined,
    seen: { clientId?: string },
  ): Authenticated {
    const basic = basicCredentials(authorization);
    const formClientId = single(form, 'client_id');
    const formSecret = single(form, 'client_secret');
    if (basic && formSecret !== undefined)
      throw invalidRequest('client_secret', 'Use exactly one client authentication method');
    if (basic && formClientId !== undefined && formClientId !== basic.clientId)
      throw invalidRequest('client_id', 'Parameter client_id does not match the Basic credentials');
    const clientId = basic?.clientId ?? formClientId;
    const clientSecret = basic?.clientSecret ?? formSecret;
    if (clientId === undefined) throw invalidRequest('client_id', 'Parameter client_id is required');
    if (clientSecret === undefined) throw invalidRequest('client_secret', 'Parameter client_secret is required');
    requestedScopes(form);

    const client = clientsById.get(clientId);
    if (client) seen.clientId = clientId;
    // Same work and same answer for an unknown client and a wrong secret: no hint which one it was.
    const candidates = (client && acceptedSecrets.get(client.clientId)) || [UNKNOWN_CLIENT_SECRET];
    const secretOk = candidates.map((secret) => secretsEqual(clientSecret, secret)).includes(true);
    if (!client || !secretOk) {
      throw new Problem(
        401,
        'invalid_client',
        'auth.token.invalid_client',
        'Client authentication failed',
        undefined,
        basic ? { 'WWW-Authenticate': 'Basic realm="limitrail"' } : {},
      );
    }
    return client;
  }

  /** private_key_jwt: a client assertion, alone (no Basic header, no client_secret). */
  function byAssertion(
    form: URLSearchParams,
    assertion: string | undefined,
    assertionType: string | undefined,
    authorization: string | undefined,
    seen: { clientId?: string },
  ): Authenticated {
    if (authorization !== undefined || single(form, 'client_secret') !== undefined)
      throw invalidRequest('client_assertion', 'Use exactly one client authentication method');
    if (assertion === undefined) throw invalidRequest('client_assertion', 'Parameter client_assertion is required');
    requestedScopes(form);
    const checked = checkClientAssertion(assertion, {
      assertionType,
      formClientId: single(form, 'client_id'),
      jwksOf: (id) => assertionClients.get(id)?.jwks,
      audiences: [`${url}${TOKEN_PATH}`, url],
      seen: seenAssertions,
      nowSec: Math.floor(Date.now() / 1000),
    });
    if (checked.refused) {
      if (checked.code === 'invalid_request') throw invalidRequest(checked.field, checked.title);
      throw new Problem(401, 'invalid_client', 'auth.token.invalid_client', checked.title);
    }
    seen.clientId = checked.clientId;
    return assertionClients.get(checked.clientId)!;
  }

  /** `seen.clientId` is set once the caller names a registered client, for the log line. */
  function issue(form: URLSearchParams, authorization: string | undefined, seen: { clientId?: string }): Issued {
    const grantType = single(form, 'grant_type');
    if (grantType === undefined) throw invalidRequest('grant_type', 'Parameter grant_type is required');
    if (grantType !== 'client_credentials') {
      throw new Problem(
        400,
        'unsupported_grant_type',
        'auth.token.unsupported_grant_type',
        'Only grant_type client_credentials is supported',
        'grant_type',
      );
    }
    const assertion = single(form, 'client_assertion');
    const assertionType = single(form, 'client_assertion_type');
    const client =
      assertion !== undefined || assertionType !== undefined
        ? byAssertion(form, assertion, assertionType, authorization, seen)
        : bySecret(form, authorization, seen);
    const requested = requestedScopes(form);
    const refused = requested.find((s) => !client.scopes.includes(s));
    if (refused !== undefined) {
      throw new Problem(
        400,
        'invalid_scope',
        'auth.token.invalid_scope',
        `Scope ${refused} is not allowed for this client`,
        'scope',
      );
    }

    // Granted scope in canonical form (deduplicated, sorted); also the byScope key.
    const scope = [...new Set([...requested, ...extraGranted])].sort().join(' ');
    const lifetimeSec = client.tokenLifetimeSec ?? defaultLifetimeSec;
    const iat = Math.floor(Date.now() / 1000);
    const accessToken = signJwt({
      iss: url,
      sub: client.clientId,
      client_id: client.clientId,
      scope,
      iat,
      exp: iat + lifetimeSec,
      jti: randomUUID(),
    });
    return {
      clientId: client.clientId,
      scope,
      body: { access_token: accessToken, token_type: 'Bearer', expires_in: lifetimeSec, scope },
    };
  }

  function send(res: ServerResponse, status: number, headers: Record<string, string>, body: string): void {
    if (res.destroyed || res.headersSent) return;
    res.writeHead(status, headers);
    res.end(body);
  }

  function sendProblem(res: ServerResponse, problem: Problem, traceId: string): void {
    const { status, errorCode, resourceKey, title, field } = problem;
    const body = {
      type: PROBLEM_TYPES[status] ?? 'about:blank',
      title,
      status,
      errorCode,
      resourceKey,
      traceId,
      ...(field ? { field } : {}),
    };
    send(
      res,
      status,
      {
        'Content-Type': 'application/problem+json',
        'Cache-Control': 'no-store',
        'X-Trace-Id': traceId,
        ...problem.headers,
      },
      JSON.stringify(body),
    );
  }

  async function handleToken(req: IncomingMessage, res: ServerResponse, traceId: string): Promise<string> {
    stats.tokenRequests += 1;
    const fault = faults.shift();
    if (fault) {
      req.resume();
      await sleep(fault.delayMs ?? delayMs);
      send(res, fault.status, fault.headers ?? {}, fault.body);
      return `${fault.status} fault`;
    }
    // Only a registered client id is logged: an unknown one may be a secret pasted in the wrong field.
    const seen: { clientId?: string } = {};
    try {
      const body = await readBody(req);
      // A wrong media type is answered 400 invalid_request (not 415): RFC 6749 section 5.2 maps every
      // malformed token request to invalid_request, and OAuth clients only parse that error shape.
      const mediaType = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
      if (mediaType !== 'application/x-www-form-urlencoded') {
        throw invalidRequest(undefined, 'Content-Type must be application/x-www-form-urlencoded');
      }
      const form = new URLSearchParams(body.toString('utf8'));
      const issued = issue(form, req.headers.authorization, seen);
      await sleep(delayMs);
      stats.tokensIssued += 1;
      stats.byScope[issued.scope] = (stats.byScope[issued.scope] ?? 0) + 1;
      send(
        res,
        200,
        { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', Pragma: 'no-cache', 'X-Trace-Id': traceId },
        JSON.stringify(issued.body),
      );
      return `200 client=${issued.clientId} scope="${issued.scope}"`;
    } catch (error) {
      const problem =
        error instanceof Problem
          ? error
          : new Problem(500, 'server_error', 'auth.token.server_error', 'Unexpected sandbox error');
      await sleep(delayMs);
      sendProblem(res, problem, traceId);
      return `${problem.status}${seen.clientId ? ` client=${seen.clientId}` : ''} error=${problem.errorCode}`;
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    stats.requests += 1;
    const traceId = randomBytes(16).toString('hex');
    // Only the path is logged: a query string could carry credentials sent by mistake.
    const path = new URL(req.url ?? '/', 'http://sandbox').pathname;
    const method = req.method ?? 'GET';
    let outcome: string;
    if (path !== TOKEN_PATH) {
      req.resume();
      sendProblem(res, new Problem(404, 'not_found', 'http.not_found', 'Not found'), traceId);
      outcome = '404';
    } else if (method !== 'POST') {
      req.resume();
      sendProblem(
        res,
        new Problem(405, 'method_not_allowed', 'http.method_not_allowed', 'Only POST is allowed', undefined, {
          Allow: 'POST',
        }),
        traceId,
      );
      outcome = '405';
    } else {
      outcome = await handleToken(req, res, traceId);
    }
    log(`${method} ${path} ${outcome}`);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  url = `http://127.0.0.1:${port}`;

  let stopped: Promise<void> | undefined;
  return {
    url,
    tokenUrl: `${url}${TOKEN_PATH}`,
    port,
    clients: clients.map((c) => ({ ...c, scopes: [...c.scopes] })),
    stats: () => ({ ...stats, byScope: { ...stats.byScope } }),
    resetStats: () => {
      stats = { requests: 0, tokenRequests: 0, tokensIssued: 0, byScope: {} };
    },
    setDelayMs: (ms) => {
      if (!Number.isFinite(ms) || ms < 0) throw new RangeError('delayMs must be a non-negative number');
      delayMs = ms;
    },
    queueFaults: (...queued) => {
      for (const fault of queued) {
        if (!Number.isInteger(fault.status) || fault.status < 200 || fault.status > 599)
          throw new RangeError('fault status must be an HTTP status 200-599');
      }
      faults.push(...queued.map((f) => ({ ...f, headers: { ...f.headers } })));
    },
    setClientSecrets: (clientId, secrets) => {
      if (!clientsById.has(clientId)) throw new Error(`unknown sandbox client ${clientId}`);
      if (secrets.length === 0 || secrets.some((secret) => !secret))
        throw new Error('at least one non-empty secret is needed');
      acceptedSecrets.set(clientId, [...secrets]);
    },
    setExtraGrantedScopes: (scopes) => {
      if (!scopes.every((s) => SCOPE_TOKEN.test(s))) throw new Error('extra scopes must be scope tokens');
      extraGranted = [...scopes];
    },
    registerAssertionClient: (client) => {
      if (!client.clientId || clientsById.has(client.clientId) || assertionClients.has(client.clientId))
        throw new Error(`client id ${client.clientId} is empty or taken`);
      if (!client.scopes.every((s) => SCOPE_TOKEN.test(s))) throw new Error('scopes must be scope tokens');
      assertLifetime(client.tokenLifetimeSec, 'tokenLifetimeSec');
      assertionClients.set(client.clientId, {
        ...client,
        scopes: [...client.scopes],
        jwks: { keys: [...client.jwks.keys] },
      });
    },
    setClientJwks: (clientId, jwks) => {
      const client = assertionClients.get(clientId);
      if (!client) throw new Error(`unknown private_key_jwt client ${clientId}`);
      assertionClients.set(clientId, { ...client, jwks: { keys: [...jwks.keys] } });
    },
    stop: () => {
      stopped ??= new Promise<void>((resolve, reject) => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      });
      return stopped;
    },
  };
}
