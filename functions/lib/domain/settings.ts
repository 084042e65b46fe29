/**
 * The broker's settings as the code uses them, typed: the upstream clients (ClientConfig) and everything else
 * (BrokerConfig). config/ reads and validates them from the environment; everything else only reads them.
 */
import type { CallerGrant } from './caller';
import type { ProofPolicy } from './proof';

/**
 * How callers are authorized (CALLER_AUTH). `grants`: every request, direct invoke or Function URL, carries an
 * identity proof and gets only what BROKER_CALLERS grants the proven principal. `invoke-permission`: the older
 * model, where the permission to invoke the function is the grant (a direct invoke without a proof may get any
 * configured scope); URL callers and proofs are still held to their grants.
 */
export type CallerAuthMode = 'grants' | 'invoke-permission';

/** How the broker authenticates to a client's token endpoint (`authMethod` in BROKER_CLIENTS). */
export const CLIENT_AUTH_METHODS = ['client_secret_post', 'client_secret_basic', 'private_key_jwt'] as const;
export type ClientAuthMethod = (typeof CLIENT_AUTH_METHODS)[number];

/** The JWS algorithms a client assertion may be signed with (a KMS signing algorithm each, upstream/jwk.ts). */
export const ASSERTION_ALGORITHMS = ['RS256', 'PS256', 'ES256'] as const;
export type AssertionAlgorithm = (typeof ASSERTION_ALGORITHMS)[number];

/** A shared secret from Secrets Manager: in the form body (client_secret_post) or HTTP Basic (client_secret_basic). */
export interface SecretAuth {
  readonly method: 'client_secret_post' | 'client_secret_basic';
  readonly secretId: string;
}

/** A JWT signed by a KMS key that never leaves KMS (RFC 7523 private_key_jwt); no secret anywhere. */
export interface PrivateKeyJwtAuth {
  readonly method: 'private_key_jwt';
  /** KMS key ARNs or alias ARNs: the first signs, all are published (`npm run jwks`) for rotation. */
  readonly signingKeyIds: readonly string[];
  /** Undefined: the signing key's default (RS256 for an RSA key, ES256 for a P-256 key). */
  readonly signingAlgorithm: AssertionAlgorithm | undefined;
  /** The assertion's `aud`: `assertionAudience`, by default the token URL. */
  readonly assertionAudience: string;
}

export type ClientAuth = SecretAuth | PrivateKeyJwtAuth;

/**
 * Token-shaping parameters sent with every token request of a client (`tokenParams`): Auth0's `audience`, RFC 8707
 * `resource` indicators (canonical: deduplicated, sorted). Part of the cache key; nothing a caller sends changes them.
 */
export interface TokenParams {
  readonly audience?: string;
  readonly resource?: readonly string[];
}

/** One upstream OAuth client the broker may fetch tokens for. */
export interface ClientConfig {
  readonly name: string;
  readonly tokenUrl: string;
  /**
   * The public client id, when configured: lets cache hits skip the secret entirely. Always set for
   * private_key_jwt (the assertion's iss and sub).
   */
  readonly clientId: string | undefined;
  readonly auth: ClientAuth;
  readonly tokenParams: TokenParams;
  /** The scopes callers may ask for with this client. */
  readonly scopes: ReadonlySet<string>;
  /** Scope sets the prewarm function keeps fresh, each canonical. */
  readonly prewarm: readonly (readonly string[])[];
}

/** The SSM parameter the callers come from at run time (BROKER_CALLERS_PARAMETER), re-read every `maxAgeSec`. */
export interface CallersParameter {
  /** Its name (`/limitrail-token-broker/prod/callers`) or ARN. */
  readonly name: string;
  /** CALLERS_MAX_AGE_SEC: how long a container uses a value read before reading it again. */
  readonly maxAgeSec: number;
}

export interface BrokerConfig {
  readonly tableName: string;
  readonly kmsKeyId: string;
  readonly clients: ReadonlyMap<string, ClientConfig>;
  /**
   * Who may get which tokens (BROKER_CALLERS); empty refuses every caller that must be granted. Empty when the callers
   * come from `callersParameter` (both set is a configuration error).
   */
  readonly grants: readonly CallerGrant[];
  /** Where the callers (and the revoked principals) come from at run time, when they do: else `grants`. */
  readonly callersParameter: CallersParameter | undefined;
  readonly callerAuth: CallerAuthMode;
  /** Where identity proofs may go and the audience they must name; undefined: no audience configured. */
  readonly proofPolicy: ProofPolicy | undefined;
  readonly secretMaxAgeSec: number;
  readonly tokenEndpointTimeoutMs: number;
  readonly memoryCacheMaxEntries: number;
  readonly dataKeyMaxAgeSec: number;
  /** How long a refresh lease holds off other containers; covers one token request and the table write. */
  readonly refreshLeaseMs: number;
  /** Attempts per token request on network errors, timeouts, 429 and 5xx (all inside the invocation's time). */
  readonly tokenEndpointMaxAttempts: number;
  /** When the endpoint fails, a cached token with at least this much life left is still answered (`stale`). */
  readonly staleTokenMinTtlSec: number;
  /** Forced refreshes without a fingerprint accept a token fetched within this many seconds. */
  readonly forceRefreshMinIntervalSec: number;
}
