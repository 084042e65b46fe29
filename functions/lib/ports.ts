/**
 * The ports of the broker's core: what the token path, the lease protocol and the handlers need from the outside
 * world, declared here, apart from the adapters that implement them (DynamoTokenTable, SecretsManagerCredentials,
 * KmsAssertionSigner, EndpointTokenProvider, StsIdentityVerifier, TableLease, InMemoryLease; fakes in unit tests). Clock, Log and
 * MetricsSink are declared in shared/ and re-exported here.
 */
import type { CachedToken } from './domain/cached-token';
import type { Caller, CallerList } from './domain/caller';
import type { ClientCredentials } from './domain/client-credentials';
import type { CheckedProof } from './domain/proof';
import type { AssertionAlgorithm } from './domain/settings';
import type { SigningKey } from './domain/signing-key';
import type { KeyedRequest } from './domain/token-request';
import type { UnavailableError, UnusableItemReason } from './shared/errors';
import type { Log } from './shared/logger';
import type { MetricsSink } from './shared/metrics';

export type { Clock } from './shared/clock';
export type { Log } from './shared/logger';
export type { MetricsSink } from './shared/metrics';

// ---- the token table (DynamoTokenTable; an in-memory fake in unit tests)

export interface Lease {
  /** Undefined when the item names no owner (or not as a string): held by an unknown owner all the same. */
  owner?: string;
  untilEpochMs: number;
}

export interface StoredEntry {
  token?: CachedToken;
  /** Why an item that holds a token could not be used (it is treated as a miss). */
  unusable?: UnusableItemReason;
  /** For decrypt_failed: what failed (the cipher's words: no secret, no token). */
  unusableDetail?: string;
  /**
   * The sealed token of an unusable item: a token write may replace exactly this (see writeToken). Undefined when it
   * is not binary: any token write replaces that.
   */
  unusableCiphertext?: Uint8Array;
  lease?: Lease;
  /** When a forced refresh last took the lease to fetch (epoch ms), as written; see lease-rules.ts. */
  forcedFetchAtEpochMs?: number;
}

export type LeaseAttempt = { acquired: true; entry: StoredEntry } | { acquired: false; entry: StoredEntry };

export interface LeaseRequest {
  nowMs: number;
  leaseDurationMs: number;
  /** Also claim the key's forced fetch (forced-refresh.ts), allowed once per this interval. */
  forceRefreshIntervalMs?: number;
}

/** Spending a caller's forced-refresh budget (one item per caller and client, beside the token items). */
export interface BudgetRequest {
  nowMs: number;
  /** The budget allows one forced fetch per this interval (FORCE_REFRESH_MIN_INTERVAL_SEC). */
  intervalMs: number;
}

export type BudgetClaim =
  | { claimed: true }
  /** Spent: `spentAtEpochMs` is when, as written (undefined when the item says nothing a broker could read). */
  | { claimed: false; spentAtEpochMs: number | undefined };

/**
 * The token table as the broker and the lease protocol use it (DynamoTokenTable is the DynamoDB one; unit tests use an
 * in-memory one with the same conditions).
 */
export interface TokenTable {
  /** The item, parsed and authenticated; `consistent` for lease coordination. */
  read(cacheKey: string, consistent?: boolean): Promise<StoredEntry>;
  /** Takes the refresh lease unless another owner holds it; the answer carries the item as it now is. */
  tryAcquireLease(cacheKey: string, owner: string, request: LeaseRequest): Promise<LeaseAttempt>;
  /** Writes a token unless a longer-lived one is stored, releasing `owner`'s lease; false when it was not written. */
  writeToken(
    cacheKey: string,
    token: CachedToken,
    clientName: string,
    owner?: string,
    replaces?: Uint8Array,
  ): Promise<boolean>;
  renewLease(cacheKey: string, owner: string, leaseUntilEpochMs: number): Promise<boolean>;
  /** Gives the lease back; `forcedFetch`: and the forced fetch its take claimed (nothing was fetched after all). */
  releaseLease(cacheKey: string, owner: string, options?: { forcedFetch?: boolean }): Promise<void>;
  /** Spends the budget item `budgetKey` unless it was spent within the interval (force-budget.ts). */
  claimForceBudget(budgetKey: string, request: BudgetRequest): Promise<BudgetClaim>;
}

// ---- upstream client credentials (SecretsManagerCredentials)

export interface SecretReadOptions {
  /** Read Secrets Manager now, bypassing the memory cache (after the endpoint rejected the cached credentials). */
  fresh?: boolean;
  /** Called when Secrets Manager is unavailable and the last credentials read are used instead. */
  onFallback?: (err: UnavailableError) => void;
}

/** Where the broker gets an upstream client's credentials (SecretsManagerCredentials; a fake in unit tests). */
export interface CredentialSource {
  get(secretId: string, options?: SecretReadOptions): Promise<ClientCredentials>;
  /** The previous version, if the secret has one (after a rotation). */
  previous(secretId: string): Promise<ClientCredentials | undefined>;
  /** Keeps `credentials` as the secret's (a previous version the endpoint still accepts). */
  remember(credentials: ClientCredentials): void;
}

// ---- client assertions of private_key_jwt clients (KmsAssertionSigner)

/**
 * Signs client assertions with a key that never leaves KMS (KmsAssertionSigner; a node:crypto key in unit tests).
 * Failures are broker errors: `signing_unavailable` (KMS down or throttling: worth another attempt) or
 * `signing_key_unusable` (disabled, deleted, not allowed, unfit for the algorithm: not).
 */
export interface AssertionSigner {
  /**
   * The public half of `keyId` (a key or alias ARN), read once per container and again after a while (an alias may
   * be moved), checked to sign with `algorithm` (undefined: the key spec's default).
   */
  signingKey(keyId: string, algorithm: AssertionAlgorithm | undefined): Promise<SigningKey>;
  /** The JWS signature of `signingInput` (ASCII `header.payload`) by that very key: r || s for ECDSA. */
  sign(key: SigningKey, signingInput: string): Promise<Uint8Array>;
}

// ---- new tokens (EndpointTokenProvider)

/** One fetch: the keyed request's client, scopes and scope, and what the fetch replaces. */
export interface FetchRequest
  extends Pick<KeyedRequest, 'client' | 'scopes' | 'deadlineMs' | 'log' | 'keyFields' | 'degraded' | 'metrics'> {
  /** The token this fetch replaces, if any (to recognize an endpoint that re-issues it). */
  previous?: CachedToken;
  /** Called before each retry (the lease holder renews its lease there). */
  beforeRetry?: () => Promise<void>;
}

/** Where the broker gets a new token: the token endpoint (EndpointTokenProvider) or, in unit tests, a fake. */
export interface TokenProvider {
  fetch(ctx: FetchRequest): Promise<CachedToken>;
}

// ---- callers' identity (StsIdentityVerifier)

export interface Verification {
  identity: Caller;
  /** `verified`: STS was asked for this request; `cached`: an earlier request with the same proof asked it. */
  source: 'verified' | 'cached';
}

export interface IdentityVerifier {
  verify(proof: CheckedProof, deadlineMs: number): Promise<Verification>;
}

// ---- who may get which tokens (StaticCallerDirectory: BROKER_CALLERS; SsmCallerDirectory: the callers parameter)

/**
 * The callers' grants and the revoked principals, as of now: fixed for the container's life (BROKER_CALLERS), or read
 * from the callers parameter and at most its max age old (the last valid value while the parameter cannot be read
 * or is invalid, logged and counted with `log` and `metrics`). Throws ConfigurationError (500) when the container
 * has never read a valid value because the value is invalid, UnavailableError (503) when it could not read one.
 */
export interface CallerDirectory {
  current(log: Log, metrics?: MetricsSink): Promise<CallerList>;
}

// ---- single flight across containers (TableLease; InMemoryLease while the table is down)

export type TokenSource = 'memory' | 'table' | 'endpoint';

export interface Outcome {
  token: CachedToken;
  source: TokenSource;
  /** Fetched but not written to the table (InMemoryLease, or a failed write): the table may hold an older token. */
  aroundTable?: true;
}

export type PrewarmOutcome = 'refreshed' | 'fresh' | 'in_progress';

/** How a miss, a refresh ahead and a prewarm get their token: one fetch for all containers (TableLease). */
export interface LeaseProtocol {
  /** A miss (or a forced refresh): the token someone fetched under the lease, this container or another one. */
  obtain(req: KeyedRequest): Promise<Outcome>;
  /**
   * Past the refresh point with a still-valid token: refresh, or serve `current` at once. Fails only when a refresh
   * failed and `current` no longer answers the request (the refresh outlasted its minTtlSeconds).
   */
  refreshAhead(req: KeyedRequest, current: Outcome): Promise<Outcome>;
  /** Prewarm: refresh a missing or due token. */
  refreshIfDue(req: KeyedRequest): Promise<PrewarmOutcome>;
}
