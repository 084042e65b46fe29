import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Clock } from './clock';
import type { ClientConfig } from './config';
import { UnavailableError, errorLogFields } from './errors';
import type { Logger } from './logger';
import type { MemoryTokenCache } from './memory-cache';
import type { Metrics } from './metrics';
import type { FetchContext, TokenFetcher } from './token-fetcher';
import { type CachedToken, isRefreshDue } from './token-lifetime';
import type { StoredEntry, TokenStore } from './token-store';

/**
 * Single flight across containers: before calling the token endpoint a container takes a refresh lease on the
 * key in DynamoDB (conditional write). Others wait for the token it writes — consistent reads, backoff with full
 * jitter — bounded by the lease and their own deadline; a holder that dies blocks them only until its lease
 * expires. Past a token's refresh point, the request that gets the lease refreshes and everyone else is served
 * the still-valid token without waiting.
 */
export type TokenSource = 'memory' | 'table' | 'endpoint';

export interface Outcome {
  token: CachedToken;
  source: TokenSource;
}

/** One request for a token, as the lease protocol sees it. */
export interface KeyedRequest {
  client: ClientConfig;
  scopes: readonly string[];
  minTtlSec: number;
  cacheKey: string;
  /** A forced refresh's fingerprint of the token the caller saw rejected. */
  rejectedTokenSha256?: string | undefined;
  /** Whether a token found in the cache answers this request (fresh enough; not the one a caller reported rejected). */
  accept: (token: CachedToken, nowMs: number) => boolean;
  /** Epoch ms by which the answer must be ready. */
  deadlineMs: number;
  log: Logger;
  /** Log fields that identify the key (client, scopes, cache key fingerprint). */
  keyFields: Record<string, unknown>;
  degraded: FetchContext['degraded'];
  metrics?: Metrics | undefined;
}

export type PrewarmOutcome = 'refreshed' | 'fresh' | 'in_progress';

/** After a failed refresh ahead, this container leaves the key alone this long: no hot retry. */
export const REFRESH_RETRY_AFTER_MS = 5_000;
const BACKOFF_BASE_MS = 25;
const BACKOFF_CAP_MS = 400;
const BACKOFF_FLOOR_MS = 5;

/** Capped exponential backoff with full jitter (`random` in [0, 1)). */
export const backoffDelayMs = (attempt: number, random: number): number =>
  Math.max(BACKOFF_FLOOR_MS, Math.floor(random * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt)));

export interface RefreshLeaseDeps {
  store: TokenStore;
  fetcher: TokenFetcher;
  memory: MemoryTokenCache;
  clock: Clock;
  leaseDurationMs: number;
  random?: () => number;
}

export class RefreshLease {
  readonly #containerId = randomUUID();
  #leases = 0;
  /** Per key: no refresh-ahead attempt before this time (lease seen held, or a refresh just failed). */
  readonly #quietUntilMs = new Map<string, number>();
  readonly #random: () => number;

  constructor(private readonly deps: RefreshLeaseDeps) {
    this.#random = deps.random ?? Math.random;
  }

  /** A miss: the token someone fetched under the lease — this container or another one. */
  async obtain(req: KeyedRequest): Promise<Outcome> {
    const { clock, store } = this.deps;
    for (;;) {
      const nowMs = clock.nowMs();
      if (nowMs >= req.deadlineMs) {
        throw new UnavailableError('no time left in this invocation to wait for or take the refresh lease', 'lease_wait_timeout');
      }
      const owner = this.#newOwner();
      const attempt = await store.tryAcquireLease(req.cacheKey, owner, nowMs, nowMs + this.deps.leaseDurationMs);
      if (attempt.acquired) {
        const current = attempt.entry.token;
        if (current && req.accept(current, nowMs) && !isRefreshDue(current, nowMs)) {
          await store.releaseLease(req.cacheKey, owner); // another holder wrote it just before
          return this.#remember(req, current, 'table');
        }
        return { token: await this.#refreshUnderLease(req, owner, current), source: 'endpoint' };
      }
      const token = await this.#waitForHolder(req, attempt.entry);
      if (token) return this.#remember(req, token, 'table');
      // The lease expired or was released without a token: try to take it.
    }
  }

  /**
   * Past the refresh point with a still-valid token: refresh if this request gets the lease, otherwise answer
   * with the current token (or a newer one another container wrote) at once. Never fails: on any error the
   * current token is served and the key is left alone for REFRESH_RETRY_AFTER_MS.
   */
  async refreshAhead(req: KeyedRequest, current: Outcome): Promise<Outcome> {
    const { clock, store } = this.deps;
    const nowMs = clock.nowMs();
    const quietUntilMs = this.#quietUntilMs.get(req.cacheKey);
    if (quietUntilMs !== undefined) {
      if (quietUntilMs > nowMs) return current;
      this.#quietUntilMs.delete(req.cacheKey);
    }
    const newer = (entry: StoredEntry) =>
      entry.token && entry.token.expiresAtEpochSec > current.token.expiresAtEpochSec && !isRefreshDue(entry.token, nowMs)
        ? entry.token
        : undefined;
    try {
      const stored = await store.read(req.cacheKey);
      const already = newer(stored);
      if (already) return this.#remember(req, already, 'table');
      const owner = this.#newOwner();
      const attempt = await store.tryAcquireLease(req.cacheKey, owner, nowMs, nowMs + this.deps.leaseDurationMs);
      const seen = newer(attempt.entry);
      if (!attempt.acquired) {
        this.#quietUntilMs.set(req.cacheKey, attempt.entry.lease?.untilEpochMs ?? nowMs + REFRESH_RETRY_AFTER_MS);
        return seen ? this.#remember(req, seen, 'table') : current;
      }
      if (seen) {
        await store.releaseLease(req.cacheKey, owner);
        return this.#remember(req, seen, 'table');
      }
      const previous = attempt.entry.token ?? current.token;
      return { token: await this.#refreshUnderLease(req, owner, previous), source: 'endpoint' };
    } catch (err) {
      this.#quietUntilMs.set(req.cacheKey, clock.nowMs() + REFRESH_RETRY_AFTER_MS);
      req.log.warn('refresh ahead failed; serving the current token', { ...req.keyFields, ...errorLogFields(err) });
      return current;
    }
  }

  /** For the prewarm function: refresh when the token is missing or past its refresh point, through the lease. */
  async refreshIfDue(req: KeyedRequest): Promise<PrewarmOutcome> {
    const { clock, store } = this.deps;
    const nowMs = clock.nowMs();
    const stored = await store.read(req.cacheKey, true);
    if (stored.token && !isRefreshDue(stored.token, nowMs)) return 'fresh';
    const owner = this.#newOwner();
    const attempt = await store.tryAcquireLease(req.cacheKey, owner, nowMs, nowMs + this.deps.leaseDurationMs);
    if (!attempt.acquired) return 'in_progress';
    const current = attempt.entry.token;
    if (current && !isRefreshDue(current, nowMs)) {
      await store.releaseLease(req.cacheKey, owner);
      return 'fresh';
    }
    await this.#refreshUnderLease(req, owner, current);
    return 'refreshed';
  }

  async #waitForHolder(req: KeyedRequest, first: StoredEntry): Promise<CachedToken | undefined> {
    const { clock, store } = this.deps;
    const { deadlineMs } = req;
    let entry = first;
    for (let attempt = 0; ; attempt++) {
      const nowMs = clock.nowMs();
      if (entry.token && req.accept(entry.token, nowMs)) return entry.token;
      const leaseUntilMs = entry.lease?.untilEpochMs ?? 0;
      if (leaseUntilMs <= nowMs) return undefined;
      if (nowMs >= deadlineMs) {
        throw new UnavailableError(
          'another container is fetching this token and it did not arrive before this invocation ran out of time',
          'lease_wait_timeout',
        );
      }
      if (attempt === 0) {
        req.metrics?.count('LeaseWaits');
        req.log.debug('waiting for the refresh lease holder', req.keyFields);
      }
      await sleep(Math.min(backoffDelayMs(attempt, this.#random()), leaseUntilMs - nowMs + 1, deadlineMs - nowMs));
      entry = await store.read(req.cacheKey, true);
    }
  }

  async #refreshUnderLease(req: KeyedRequest, owner: string, previous: CachedToken | undefined): Promise<CachedToken> {
    const { clock, fetcher, store } = this.deps;
    // Retries may outlast the lease: renew it before each one, so no other container starts a second fetch.
    const beforeRetry = async () => {
      const nowMs = clock.nowMs();
      await store.renewLease(req.cacheKey, owner, nowMs + this.deps.leaseDurationMs).catch(() => undefined);
    };
    let token: CachedToken;
    try {
      token = await fetcher.fetch({ ...req, previous, beforeRetry });
    } catch (err) {
      await store.releaseLease(req.cacheKey, owner).catch(() => undefined); // it expires anyway
      throw err;
    }
    this.deps.memory.set(req.cacheKey, token);
    try {
      await store.writeToken(req.cacheKey, token, req.client.name, owner);
    } catch (err) {
      // KMS or the table failed: others cannot see this token, so let them take the lease now, not at expiry.
      req.log.warn('token not written to the table', { ...req.keyFields, ...errorLogFields(err) });
      await store.releaseLease(req.cacheKey, owner).catch(() => undefined);
    }
    return token;
  }

  #remember(req: KeyedRequest, token: CachedToken, source: TokenSource): Outcome {
    this.deps.memory.set(req.cacheKey, token);
    return { token, source };
  }

  #newOwner(): string {
    this.#leases += 1;
    return `${this.#containerId}:${this.#leases}`;
  }
}
