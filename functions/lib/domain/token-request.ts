/**
 * A token request: what a caller asks for (TokenRequest), and the same request keyed for the cache and carrying its
 * invocation's deadline, log and metrics (KeyedRequest), as the broker, the lease and the token provider see it.
 */
import type { LogReason } from '../shared/errors';
import type { Log } from '../shared/logger';
import type { DegradedKind, MetricsSink } from '../shared/metrics';
import type { CachedToken } from './cached-token';
import type { ClientConfig } from './settings';

/** The least remaining lifetime a caller gets when it does not say (seconds). */
export const DEFAULT_MIN_TTL_SEC = 60;
/**
 * The most a caller may demand. Well under a token lifetime (about 3600 s upstream), so a cached token serves
 * callers for most of its life instead of forcing early refreshes.
 */
export const MAX_MIN_TTL_SEC = 900;

/** A validated token request: the client, its canonical scope set and the least lifetime the caller accepts. */
export interface TokenRequest {
  readonly client: ClientConfig;
  /** Deduplicated and sorted. */
  readonly scopes: readonly string[];
  readonly minTtlSec: number;
  /** The caller's LimitRail call was rejected with 401: do not answer with the token it used. */
  readonly forceRefresh: boolean;
  /** Hex SHA-256 of the rejected token (lowercase), when the caller gave it. */
  readonly rejectedTokenSha256: string | undefined;
}

/** What an invocation hands down with a request: its deadline, its log and its metrics. */
export interface RequestScope {
  /** Epoch ms by which the answer must be ready. */
  deadlineMs: number;
  log: Log;
  metrics?: MetricsSink | undefined;
}

/** Reports a degraded path: one structured log line (a reason code, and details as their own fields) and a metric. */
export type ReportDegraded = (kind: DegradedKind, reason: LogReason, detail?: Record<string, unknown>) => void;

/**
 * A token request keyed for the cache, as the broker, the lease protocol and the token provider see it: the request,
 * its cache key, which cached token answers it, and the invocation's scope.
 */
export interface KeyedRequest
  extends Omit<TokenRequest, 'forceRefresh' | 'rejectedTokenSha256'>,
    Partial<Pick<TokenRequest, 'forceRefresh' | 'rejectedTokenSha256'>>,
    RequestScope {
  cacheKey: string;
  /** Whether a token found in the cache answers this request (fresh enough; not the one a caller reported rejected). */
  accept: (token: CachedToken, nowMs: number) => boolean;
  /**
   * Whether a token read from the table may be used at all (not a rollback: cache/rollback-guard.ts); a token it
   * refuses is treated as absent (it logs and counts the refusal). Absent: every authentic token may.
   */
  vetTableToken?: (token: CachedToken) => boolean;
  /** A forced refresh's budget item: the caller's and client's (domain/cache-key.ts forceBudgetKeyFor). */
  forceBudgetKey?: string;
  /** Log fields that identify the key (client, scopes, cache key fingerprint). */
  keyFields: Record<string, unknown>;
  degraded: ReportDegraded;
}
