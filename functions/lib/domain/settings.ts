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

/** One upstream OAuth client the broker may fetch tokens for. */
export interface ClientConfig {
  readonly name: string;
  readonly secretId: string;
  readonly tokenUrl: string;
  /** The public client id, when configured: lets cache hits skip the secret entirely. */
  readonly clientId: string | undefined;
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
