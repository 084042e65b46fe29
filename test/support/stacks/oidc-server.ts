/**
 * An independent, real OAuth 2.0 authorization server for integration tests: oidc-provider with
 * only the client_credentials grant, on 127.0.0.1 with an ephemeral port. A plain http.Server wraps
 * the provider and counts the requests that really reached the token endpoint; a middleware records what each
 * token request asked for and how its client authenticated, from the form the provider parsed (never a credential;
 * `audience`, Auth0's parameter, is recorded, not acted on).
 *
 * Options: which client authentication methods the server accepts at all (`clientAuthMethods`, e.g.
 * client_secret_basic only), more clients (a secret one with any id and secret, or a private_key_jwt one with the
 * JWK Set to verify its assertions with: the provider checks signature, iss, sub, aud, exp and refuses a replayed
 * jti), and RFC 8707 resource indicators it knows (tokens for them are JWTs whose `aud` is the resource).
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type OidcAuthMethod = 'client_secret_post' | 'client_secret_basic' | 'private_key_jwt';

/** What one token request asked for, as the provider read it, and how it ended. Never a secret or an assertion. */
export interface ReceivedTokenRequest {
  status: number;
  /** The client the provider authenticated (undefined when it could not). */
  clientId: string | undefined;
  /** How the request authenticated: `basic` (Authorization header), `post`, `assertion`, or `none`. */
  presented: 'basic' | 'post' | 'assertion' | 'none';
  error: string | undefined;
  scope: string | undefined;
  audience: string | undefined;
  resource: string[];
}

export interface OidcServer {
  issuer: string;
  tokenUrl: string;
  clientId: string;
  clientSecret: string;
  scopes: string[];
  tokenRequests(): number;
  /** Every token request so far, in order. */
  received(): ReceivedTokenRequest[];
  /** Holds each token request this long before the provider sees it (widens a race window). */
  setDelayMs(ms: number): void;
  stop(): Promise<void>;
}

export interface OidcClient {
  clientId: string;
  /** client_secret_post (default) or client_secret_basic: with clientSecret; private_key_jwt: with jwks. */
  authMethod?: OidcAuthMethod;
  clientSecret?: string;
  /** The public keys the client's assertions are verified with (what `npm run jwks` prints). */
  jwks?: { keys: Record<string, unknown>[] };
  /** The one JWS algorithm its assertions must use (token_endpoint_auth_signing_alg). */
  signingAlg?: string;
}

export interface OidcServerOptions {
  scopes?: string[];
  accessTokenTtlSec?: number;
  /** The client authentication methods the server accepts at all (default: oidc-provider's, all of them). */
  clientAuthMethods?: OidcAuthMethod[];
  /** Clients besides the default one (whose method is the first of clientAuthMethods, or client_secret_post). */
  clients?: OidcClient[];
  /** RFC 8707 resource indicators the server issues tokens for; any other is refused (invalid_target). */
  resources?: string[];
}

const DEFAULT_SCOPES = ['limitrail.usage.read', 'limitrail.usage.write'];
const DEFAULT_ACCESS_TOKEN_TTL_SEC = 3600;
const TOKEN_PATH = '/token';

type NodeHandler = (req: IncomingMessage, res: ServerResponse) => void;
interface ProviderContext {
  path: string;
  status: number;
  body?: unknown;
  headers: Record<string, string | undefined>;
  /** `body`: the form as the provider parsed it, every field (params: only those it allows for the route). */
  oidc?: { body?: Record<string, unknown>; client?: { clientId: string } };
}
/** The slice of oidc-provider used here; the package ships no type declarations. */
interface ProviderModule {
  Provider: new (
    issuer: string,
    configuration: Record<string, unknown>,
  ) => {
    callback(): NodeHandler;
    use(middleware: (ctx: ProviderContext, next: () => Promise<void>) => Promise<void>): void;
  };
  errors: { InvalidTarget: new () => Error };
}
/** A non-literal specifier keeps tsc from demanding declarations for the untyped package. */
const PROVIDER_MODULE = 'oidc-provider';
type Payload = Record<string, unknown>;

/**
 * A per-server in-memory store with the adapter interface oidc-provider expects. Passing one keeps
 * the provider from using (and warning about) its process-global development adapter.
 */
function createMemoryAdapter() {
  const store = new Map<string, { payload: Payload; expiresAtEpochMs: number }>();
  return class MemoryAdapter {
    constructor(private readonly model: string) {}
    private key(id: string) {
      return `${this.model}:${id}`;
    }
    async upsert(id: string, payload: Payload, expiresInSec?: number) {
      store.set(this.key(id), {
        payload,
        expiresAtEpochMs: expiresInSec ? Date.now() + expiresInSec * 1000 : Infinity,
      });
    }
    async find(id: string) {
      const entry = store.get(this.key(id));
      if (!entry || entry.expiresAtEpochMs <= Date.now()) return undefined;
      return entry.payload;
    }
    async findByUid() {
      return undefined;
    }
    async findByUserCode() {
      return undefined;
    }
    async consume(id: string) {
      const entry = store.get(this.key(id));
      if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
    }
    async destroy(id: string) {
      store.delete(this.key(id));
    }
    async revokeByGrantId() {}
  };
}

/**
 * oidc-provider prints "NOTICE"/"WARNING" lines through console.info/warn (an unsupported-runtime
 * warning on Node 20 at import, development defaults at construction). They are not test output.
 */
async function withoutProviderNotices<T>(run: () => Promise<T>): Promise<T> {
  const { info, warn } = console;
  const isNotice = (args: unknown[]) => typeof args[0] === 'string' && args[0].includes('oidc-provider');
  console.info = (...args: unknown[]) => {
    if (!isNotice(args)) info(...args);
  };
  console.warn = (...args: unknown[]) => {
    if (!isNotice(args)) warn(...args);
  };
  try {
    return await run();
  } finally {
    console.info = info;
    console.warn = warn;
  }
}

export async function startOidcServer(options: OidcServerOptions = {}): Promise<OidcServer> {
  const scopes = [...(options.scopes ?? DEFAULT_SCOPES)];
  const accessTokenTtlSec = options.accessTokenTtlSec ?? DEFAULT_ACCESS_TOKEN_TTL_SEC;
  if (!Number.isInteger(accessTokenTtlSec) || accessTokenTtlSec <= 0)
    throw new Error('accessTokenTtlSec must be a positive integer');
  const clientId = `oidc_test_${randomBytes(8).toString('hex')}`;
  const clientSecret = randomBytes(32).toString('base64url');
  const defaultMethod = options.clientAuthMethods?.includes('client_secret_post')
    ? 'client_secret_post'
    : (options.clientAuthMethods?.[0] ?? 'client_secret_post');
  const registered = [{ clientId, clientSecret, authMethod: defaultMethod }, ...(options.clients ?? [])].map(
    (client) => ({
      client_id: client.clientId,
      ...(client.clientSecret ? { client_secret: client.clientSecret } : {}),
      ...(client.jwks ? { jwks: client.jwks } : {}),
      ...(client.signingAlg ? { token_endpoint_auth_signing_alg: client.signingAlg } : {}),
      token_endpoint_auth_method: client.authMethod ?? 'client_secret_post',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: scopes.join(' '),
    }),
  );
  const received: ReceivedTokenRequest[] = [];
  const resources = new Set(options.resources ?? []);

  // The provider needs the issuer (and so the port) up front: listen first, attach the handler after.
  let providerCallback: NodeHandler | undefined;
  let tokenRequests = 0;
  let delayMs = 0;
  const server = createServer((req, res) => {
    const isToken = new URL(req.url ?? '/', 'http://oidc').pathname === TOKEN_PATH;
    if (isToken) tokenRequests += 1;
    const handler = providerCallback;
    if (!handler) {
      res.writeHead(503).end();
      return;
    }
    if (isToken && delayMs > 0) setTimeout(() => handler(req, res), delayMs);
    else handler(req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  try {
    providerCallback = await withoutProviderNotices(async () => {
      const { Provider, errors } = (await import(PROVIDER_MODULE)) as ProviderModule;
      // Our own key instead of the development keystore. RS256 because it is the default
      // id_token_signed_response_alg; clients are validated lazily (at their first request), so an
      // ES256-only keystore surfaces as a 400 invalid_client_metadata at the token endpoint.
      const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
      const provider = new Provider(issuer, {
        adapter: createMemoryAdapter(),
        jwks: { keys: [{ ...signingKey, kid: 'test-signing-key', use: 'sig', alg: 'RS256' }] },
        // A secret client registered for client_secret_post is also served with Basic (and the other way round),
        // unless clientAuthMethods leaves one out: then that one is refused (invalid_client).
        clients: registered,
        ...(options.clientAuthMethods ? { clientAuthMethods: options.clientAuthMethods } : {}),
        scopes,
        features: {
          clientCredentials: { enabled: true },
          devInteractions: { enabled: false },
          introspection: { enabled: false },
          revocation: { enabled: false },
          resourceIndicators: {
            enabled: true,
            defaultResource: async (_ctx: unknown, _client: unknown, oneOf?: string) => oneOf,
            useGrantedResource: async () => false,
            getResourceServerInfo: async (_ctx: unknown, resource: string) => {
              if (!resources.has(resource)) throw new errors.InvalidTarget();
              return {
                scope: scopes.join(' '),
                audience: resource,
                accessTokenTTL: accessTokenTtlSec,
                accessTokenFormat: 'jwt',
                jwt: { sign: { alg: 'RS256' } },
              };
            },
          },
        },
        ttl: { ClientCredentials: accessTokenTtlSec },
        routes: { token: TOKEN_PATH },
        cookies: { keys: [randomBytes(32).toString('base64url')] },
      });
      provider.use(async (ctx, next) => {
        await next();
        if (ctx.path !== TOKEN_PATH) return;
        const params = ctx.oidc?.body ?? {};
        const text = (name: string) => (typeof params[name] === 'string' ? (params[name] as string) : undefined);
        const resource = params.resource;
        received.push({
          status: ctx.status,
          clientId: ctx.status < 300 ? ctx.oidc?.client?.clientId : undefined,
          presented: ctx.headers.authorization
            ? 'basic'
            : text('client_assertion')
              ? 'assertion'
              : text('client_secret')
                ? 'post'
                : 'none',
          error: ctx.status >= 400 ? String((ctx.body as { error?: unknown } | undefined)?.error) : undefined,
          scope: text('scope'),
          audience: text('audience'),
          resource: Array.isArray(resource) ? resource.map(String) : typeof resource === 'string' ? [resource] : [],
        });
      });
      return provider.callback();
    });
  } catch (error) {
    server.close();
    throw error;
  }

  let stopped: Promise<void> | undefined;
  return {
    issuer,
    tokenUrl: `${issuer}${TOKEN_PATH}`,
    clientId,
    clientSecret,
    scopes: [...scopes],
    tokenRequests: () => tokenRequests,
    received: () => received.map((r) => ({ ...r, resource: [...r.resource] })),
    setDelayMs: (ms) => {
      if (!Number.isFinite(ms) || ms < 0) throw new RangeError('delayMs must be a non-negative number');
      delayMs = ms;
    },
    stop: () => {
      stopped ??= new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      });
      return stopped;
    },
  };
}
