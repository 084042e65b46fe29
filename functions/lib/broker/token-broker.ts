/**
 * The token path, in one place: memory, then the table, then the token endpoint under the refresh lease
 * (cache/lease/table-lease.ts; cache/lease/in-memory-lease.ts while the table is down), with refresh ahead, forced
 * refreshes after a 401 and stale answers while the endpoint fails. It hands a token only to a caller entitled to
 * every scope it carries. It decides; the ports it is given (ports.ts) do the I/O; audit.ts writes the audit lines.
 */

import { FORCE_REFRESH_BUDGET } from '../cache/lease/force-budget';
import { FORCE_REFRESH_LIMITED } from '../cache/lease/forced-refresh';
import { InMemoryLease } from '../cache/lease/in-memory-lease';
import type { MemoryTokenCache } from '../cache/memory-cache';
import { RollbackGuard } from '../cache/rollback-guard';
import { type TokenAnswer, toTokenAnswer } from '../domain/answer';
import { cacheKeyFor, forceBudgetKeyFor } from '../domain/cache-key';
import { type CachedToken, isRefreshDue, isServable, remainingSec } from '../domain/cached-token';
import type { BrokerConfig, ClientConfig } from '../domain/settings';
import type { KeyedRequest, TokenRequest } from '../domain/token-request';
import type {
  CredentialSource,
  LeaseProtocol,
  Outcome,
  PrewarmOutcome,
  TokenProvider,
  TokenSource,
  TokenTable,
} from '../ports';
import type { Clock } from '../shared/clock';
import { type Sleep, withinDeadline } from '../shared/deadline';
import { AccessDeniedError, BrokerError, errorLogFields, type LogReason, UnavailableError } from '../shared/errors';
import { sha256Hex } from '../shared/hash';
import type { Log } from '../shared/logger';
import { DEGRADED_METRIC, type DegradedKind, type MetricName, type MetricsSink } from '../shared/metrics';
import { SingleFlight } from '../shared/single-flight';
import { auditIssued, DIRECT_INVOKE } from './audit';

export interface BrokerDeps {
  config: BrokerConfig;
  clock: Clock;
  secrets: CredentialSource;
  store: TokenTable;
  memory: MemoryTokenCache;
  fetcher: TokenProvider;
  lease: LeaseProtocol;
  /** The lease protocol while the table is down; default InMemoryLease over the same parts. */
  tableDown?: LeaseProtocol;
  /** What this container served, to refuse a rolled-back table token; default a new one. */
  guard?: RollbackGuard;
  log: Log;
  /** Bounds a wait for another request's miss by this request's deadline; default node timers. */
  sleep?: Sleep;
}

export interface CallOptions {
  /** Epoch ms by which the answer must be ready (the Lambda's remaining time less a margin). */
  deadlineMs: number;
  log?: Log;
  metrics?: MetricsSink;
  /** Who asked, for the audit line: a verified ARN, or "direct invoke". */
  caller?: string;
  /**
   * The proven principal (callers/grants.ts principalKeyOf: a role for all its sessions), whose forced refreshes share
   * one budget per client. Absent: a direct invoke without a proof; all of those share one.
   */
  principal?: string;
  /** How the caller's identity was established: its proof verified with STS now, or earlier (cached). */
  identity?: 'verified' | 'cached';
  /**
   * Every scope this caller may hold. A token whose granted scopes go beyond it is not handed over (it may still
   * serve callers entitled to it). Absent: no limit (prewarm, which hands nothing out).
   */
  allowedScopes?: ReadonlySet<string>;
}

const SOURCE_METRIC: Record<TokenSource, MetricName> = {
  memory: 'MemoryHits',
  table: 'TableHits',
  endpoint: 'EndpointFetches',
};

/**
 * The token path: memory, then the table, then the token endpoint under the refresh lease. Concurrent misses
 * for one key in this container share one fetch; past its refresh point a token is refreshed by one request
 * while the others are served it. Through outages it keeps answering: from memory and the endpoint when the
 * table is down, and with a still-valid token (`stale: true`) when the endpoint is.
 */
export class TokenBroker {
  /** In this container: the one table read, miss and refresh ahead in flight per key. */
  readonly #reads = new SingleFlight<string, CachedToken | undefined>();
  readonly #misses = new SingleFlight<string, Outcome>();
  readonly #refreshes = new SingleFlight<string, Outcome>();
  /** Per miss in flight: the deadline of the request that started it. */
  readonly #missDeadlinesMs = new Map<string, number>();
  /** The lease protocol while the table is down: this container alone. */
  readonly #tableDown: LeaseProtocol;
  readonly #guard: RollbackGuard;

  constructor(private readonly deps: BrokerDeps) {
    this.#guard = deps.guard ?? new RollbackGuard();
    this.#tableDown =
      deps.tableDown ??
      new InMemoryLease({ ...deps, forceRefreshIntervalMs: deps.config.forceRefreshMinIntervalSec * 1000 });
  }

  async getToken(request: TokenRequest, options: CallOptions): Promise<{ answer: TokenAnswer; source: TokenSource }> {
    const { clock, memory } = this.deps;
    const req = await this.#keyed(request, options);
    const served = ({ token, source, aroundTable }: Outcome, stale = false) => {
      checkTokenScopes(token, options.allowedScopes, req);
      // The rollback guard remembers what the table has held (a token read from it, or fetched under its lease and
      // written): a token fetched around the table, or served from memory, says nothing of what the table should hold.
      if (source === 'table' || (source === 'endpoint' && !aroundTable)) {
        this.#guard.served(req.cacheKey, token);
        if (req.rejectedTokenSha256 !== undefined && !stale)
          this.#guard.replaced(req.cacheKey, req.rejectedTokenSha256, token);
      }
      options.metrics?.count(SOURCE_METRIC[source]);
      auditIssued(
        req.log,
        { caller: options.caller ?? DIRECT_INVOKE, identity: options.identity },
        req.keyFields,
        source,
        token,
        stale,
      );
      const answer = toTokenAnswer(token, req.client.name, clock.nowMs());
      return { answer: stale ? { ...answer, stale } : answer, source };
    };

    /** A failed refresh or miss: a still-valid token marked stale, or the error. */
    const staleOr = (err: unknown, candidates: (Outcome | undefined)[]) => {
      const fallback = this.#staleFallback(req, err, candidates);
      if (!fallback) throw err;
      req.degraded('stale_answer', errorLogFields(err).reason);
      return served(fallback, true);
    };
    /** Refresh ahead fails only when the token it started with no longer answers the request (table-lease.ts). */
    const refreshed = (current: Outcome) =>
      this.#maybeRefreshAhead(req, current).then(served, (err: unknown) => staleOr(err, [current]));

    const inMemory = memory.get(req.cacheKey, clock.nowMs());
    if (inMemory && req.accept(inMemory, clock.nowMs())) return refreshed({ token: inMemory, source: 'memory' });
    // A burst of requests for a key this container does not hold makes one table read, not one each.
    const stored = await this.#reads.run(req.cacheKey, () => this.#readTable(req));
    if (stored && req.accept(stored, clock.nowMs())) {
      memory.set(req.cacheKey, stored);
      return refreshed({ token: stored, source: 'table' });
    }
    options.metrics?.count('Misses');
    try {
      return served(await this.#sharedMiss(req));
    } catch (err) {
      return staleOr(err, [
        inMemory && { token: inMemory, source: 'memory' },
        stored && { token: stored, source: 'table' },
      ]);
    }
  }

  /** Prewarm: refresh one scope set if it is missing or past its refresh point. */
  async prewarm(client: ClientConfig, scopes: readonly string[], options: CallOptions): Promise<PrewarmOutcome> {
    const req = await this.#keyed(
      { client, scopes, minTtlSec: 0, forceRefresh: false, rejectedTokenSha256: undefined },
      options,
    );
    return this.deps.lease.refreshIfDue(req);
  }

  async #keyed(request: TokenRequest, options: CallOptions): Promise<KeyedRequest> {
    const { client, scopes, minTtlSec } = request;
    const log = options.log ?? this.deps.log;
    const clientId = await this.#clientIdOf(client);
    const cacheKey = cacheKeyFor(client.tokenUrl, clientId, scopes, client.tokenParams);
    const keyFields = { client: client.name, scopes, cacheKey: cacheKey.slice(0, 15) };
    const principal = options.principal ?? DIRECT_INVOKE;
    return {
      client,
      scopes,
      minTtlSec,
      cacheKey,
      forceRefresh: request.forceRefresh,
      rejectedTokenSha256: request.rejectedTokenSha256,
      ...(request.forceRefresh ? { forceBudgetKey: forceBudgetKeyFor(principal, client.tokenUrl, clientId) } : {}),
      accept: this.#acceptance(request),
      vetTableToken: this.#guard.vetter(cacheKey, { log, keyFields, metrics: options.metrics }),
      deadlineMs: options.deadlineMs,
      log,
      keyFields,
      metrics: options.metrics,
      degraded: (kind: DegradedKind, reason: LogReason, detail?: Record<string, unknown>) => {
        options.metrics?.count(DEGRADED_METRIC[kind]);
        log.warn(`degraded: ${kind.replace('_', ' ')}`, { ...keyFields, degraded: kind, reason, ...detail });
      },
    };
  }

  /**
   * The client id of the cache key: configured (always, for private_key_jwt: no secret is ever read for it), or read
   * from the client's secret.
   */
  async #clientIdOf(client: ClientConfig): Promise<string> {
    if (client.clientId !== undefined) return client.clientId;
    if (client.auth.method === 'private_key_jwt')
      throw new Error(`unreachable: private_key_jwt client ${client.name} without a client id`);
    return (await this.deps.secrets.get(client.auth.secretId)).clientId;
  }

  /**
   * Which cached token answers the request at once. A forced refresh with the rejected token's fingerprint accepts
   * any other token; without one, none: whether the current token answers it depends on the key's last forced
   * fetch, decided with the item (forced-refresh.ts).
   */
  #acceptance(request: TokenRequest): KeyedRequest['accept'] {
    const { minTtlSec, forceRefresh, rejectedTokenSha256 } = request;
    if (!forceRefresh) return (token, nowMs) => isServable(token, nowMs, minTtlSec);
    if (rejectedTokenSha256 !== undefined) {
      return (token, nowMs) =>
        isServable(token, nowMs, minTtlSec) && sha256Hex(token.accessToken) !== rejectedTokenSha256;
    }
    return () => false;
  }

  /** A still-valid token to answer with when fetching failed: at least STALE_TOKEN_MIN_TTL_SEC left, not rejected. */
  #staleFallback(req: KeyedRequest, err: unknown, candidates: (Outcome | undefined)[]): Outcome | undefined {
    if (!(err instanceof BrokerError) || err.status < 500) return undefined;
    if (err.reason === FORCE_REFRESH_LIMITED || err.reason === FORCE_REFRESH_BUDGET) return undefined;
    const nowMs = this.deps.clock.nowMs();
    const floorSec = this.deps.config.staleTokenMinTtlSec;
    const usable = candidates.filter(
      (c): c is Outcome =>
        c !== undefined && remainingSec(c.token, nowMs) >= floorSec && !isRejectedByCaller(req, c.token),
    );
    return usable.sort((a, b) => b.token.expiresAtEpochSec - a.token.expiresAtEpochSec)[0];
  }

  async #readTable(req: KeyedRequest): Promise<CachedToken | undefined> {
    try {
      const entry = await this.deps.store.read(req.cacheKey);
      if (entry.unusable) {
        req.metrics?.count('UnusableItems');
        if (entry.unusable === 'decrypt_failed') req.metrics?.count('DecryptFailures');
        const reason =
          entry.unusableDetail === undefined ? entry.unusable : `${entry.unusable}: ${entry.unusableDetail}`;
        req.log.warn('cached item unusable, treated as a miss', { ...req.keyFields, reason });
      }
      return entry.token && req.vetTableToken?.(entry.token) !== false ? entry.token : undefined;
    } catch (err) {
      req.degraded('table_bypass', errorLogFields(err).reason);
      return undefined;
    }
  }

  async #maybeRefreshAhead(req: KeyedRequest, current: Outcome): Promise<Outcome> {
    if (!isRefreshDue(current.token, this.deps.clock.nowMs())) return current;
    // One refresh per key in this container; other requests meanwhile get the current token at once.
    if (this.#refreshes.has(req.cacheKey)) return current;
    return this.#refreshes.run(req.cacheKey, () => this.deps.lease.refreshAhead(req, current));
  }

  /**
   * Concurrent misses for a key share one flight; a request that joins another's waits for it only until its own
   * deadline. A flight started by a request with less time than this one may fail for lack of that time (its lease wait,
   * or its endpoint budget, cut short by its deadline): if it fails (a 5xx), this request runs its own miss with its own
   * time, as it would have without joining.
   */
  async #sharedMiss(req: KeyedRequest): Promise<Outcome> {
    const key = missFlightKey(req);
    const shared = this.#misses.inFlight(key);
    if (!shared) {
      this.#missDeadlinesMs.set(key, req.deadlineMs);
      return this.#misses.run(key, () => this.#miss(req).finally(() => this.#missDeadlinesMs.delete(key)));
    }
    const startersDeadlineMs = this.#missDeadlinesMs.get(key) ?? req.deadlineMs;
    let late = false;
    const tooLate = () => {
      late = true;
      return new UnavailableError(
        'another request is fetching this token and it did not arrive before this invocation ran out of time',
        'lease_wait_timeout',
      );
    };
    try {
      return await withinDeadline(shared, req.deadlineMs - this.deps.clock.nowMs(), tooLate, this.deps.sleep);
    } catch (err) {
      const retryable = err instanceof BrokerError && err.status >= 500 && err.reason !== FORCE_REFRESH_LIMITED;
      const hadLessTime = startersDeadlineMs < req.deadlineMs && this.deps.clock.nowMs() < req.deadlineMs;
      if (late || !retryable || !hadLessTime) throw err;
      return this.#sharedMiss(req);
    }
  }

  async #miss(req: KeyedRequest): Promise<Outcome> {
    try {
      return await this.deps.lease.obtain(req);
    } catch (err) {
      if (!(err instanceof BrokerError && err.reason === 'table_unavailable')) throw err;
      req.degraded('table_bypass', err.reason);
      return this.#tableDown.obtain(req);
    }
  }
}

/**
 * Concurrent misses share one flight; a forced refresh only with forced refreshes of the same caller (its budget) that
 * reported the same token.
 */
const missFlightKey = (req: KeyedRequest): string =>
  req.forceRefresh ? `${req.cacheKey}|forced|${req.rejectedTokenSha256 ?? ''}|${req.forceBudgetKey}` : req.cacheKey;

/** Whether the caller reported this very token rejected (a forced refresh with its fingerprint). */
const isRejectedByCaller = (req: KeyedRequest, token: CachedToken): boolean =>
  req.rejectedTokenSha256 !== undefined && sha256Hex(token.accessToken) === req.rejectedTokenSha256;

/**
 * A token is handed only to a caller entitled to every scope it carries: the endpoint may grant more than was
 * asked, and such a token must not reach a caller whose grants are narrower.
 */
const checkTokenScopes = (token: CachedToken, allowed: ReadonlySet<string> | undefined, req: KeyedRequest): void => {
  const beyond = allowed === undefined ? [] : token.scopes.filter((s) => !allowed.has(s));
  if (beyond.length === 0) return;
  req.log.warn("token carries scopes beyond the caller's grants; not handed over", {
    ...req.keyFields,
    grantedByEndpoint: token.scopes,
    beyondGrant: beyond,
  });
  throw new AccessDeniedError(
    `the token for these scopes also carries ${beyond.length} scope(s) your grants do not cover; ask the platform team`,
    'token_scope_beyond_grant',
  );
};
