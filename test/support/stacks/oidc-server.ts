/**
 * An independent, real OAuth 2.0 authorization server for integration tests: oidc-provider with
 * only the client_credentials grant, on 127.0.0.1 with an ephemeral port. A plain http.Server wraps
 * the provider and counts the requests that really reached the token endpoint.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface OidcServer {
  issuer: string;
  tokenUrl: string;
  clientId: string;
  clientSecret: string;
  scopes: string[];
  tokenRequests(): number;
  stop(): Promise<void>;
}

export interface OidcServerOptions {
  scopes?: string[];
  accessTokenTtlSec?: number;
}

const DEFAULT_SCOPES = ['limitrail.usage.read', 'limitrail.usage.write'];
const DEFAULT_ACCESS_TOKEN_TTL_SEC = 3600;
const TOKEN_PATH = '/token';

type NodeHandler = (req: IncomingMessage, res: ServerResponse) => void;
/** The slice of oidc-provider used here; the package ships no type declarations. */
interface ProviderModule {
  Provider: new (issuer: string, configuration: Record<string, unknown>) => { callback(): NodeHandler };
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

  // The provider needs the issuer (and so the port) up front: listen first, attach the handler after.
  let providerCallback: NodeHandler | undefined;
  let tokenRequests = 0;
  const server = createServer((req, res) => {
    if (new URL(req.url ?? '/', 'http://oidc').pathname === TOKEN_PATH) tokenRequests += 1;
    if (!providerCallback) {
      res.writeHead(503).end();
      return;
    }
    providerCallback(req, res);
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
      const { Provider } = (await import(PROVIDER_MODULE)) as ProviderModule;
      // Our own key instead of the development keystore. RS256 because it is the default
      // id_token_signed_response_alg; clients are validated lazily (at their first request), so an
      // ES256-only keystore surfaces as a 400 invalid_client_metadata at the token endpoint.
      const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
      const provider = new Provider(issuer, {
        adapter: createMemoryAdapter(),
        jwks: { keys: [{ ...signingKey, kid: 'test-signing-key', use: 'sig', alg: 'RS256' }] },
        clients: [
          {
            client_id: clientId,
            client_secret: clientSecret,
            // client_secret_post registered; oidc-provider also accepts Basic for secret-based clients.
            token_endpoint_auth_method: 'client_secret_post',
            grant_types: ['client_credentials'],
            response_types: [],
            redirect_uris: [],
            scope: scopes.join(' '),
          },
        ],
        scopes,
        features: {
          clientCredentials: { enabled: true },
          devInteractions: { enabled: false },
          introspection: { enabled: false },
          revocation: { enabled: false },
        },
        ttl: { ClientCredentials: accessTokenTtlSec },
        routes: { token: TOKEN_PATH },
        cookies: { keys: [randomBytes(32).toString('base64url')] },
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
    stop: () => {
      stopped ??= new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      });
      return stopped;
    },
  };
}
