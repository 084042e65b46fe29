import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Clock } from './clock';
import type { ClientConfig } from './config';
import { UnavailableError, errorLogFields } from './errors';
import { decideForcedRefresh, forcedRefreshLimited } from './forced-refresh';
import { forcedFetchBlockedUntilMs, isLeaseHeld } from './lease-rules';
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
 * expires, and a lease nobody could have taken (pinned far out) counts as expired (lease-rules.ts). Past a token's
 * refresh point, the request that gets the lease refreshes and everyone else is served the still-valid token
 * without waiting. Forced refreshes take the lease too, and fetch at most once per interval (forced-refresh.ts).
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
  /** The caller saw its token rejected (401): decided by forced-refresh.ts, at most one fetch per interval. */
  forceRefresh?: boolean;
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

/** The table as the lease protocol uses it (a small interface, so tests can give a fake). */
export type LeaseStore = Pick<TokenStore, 'read' | 'tryAcquireLease' | 'writeToken' | 'renewLease' | 'releaseLease'>;

export interface RefreshLeaseDeps {
  store: LeaseStore;
  fetcher: Pick<TokenFetcher, 'fetch'>;
  memory: MemoryTokenCache;
  clock: Clock;
  leaseDurationMs: number;
  /** Forced refreshes of a key fetch at most once per this interval (FORCE_REFRESH_MIN_INTERVAL_SEC). */
  forceRefreshIntervalMs: number;
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export class RefreshLease {
  readonly #containerId = randomUUID();
  #leases = 0;
  /** Per key: no refresh-ahead attempt before this time (lease seen held, or a refresh just failed). */
  readonly #quietUntilMs = new Map<string, number>();
  readonly #random: () => number;
  readonly #sleep: (ms: number) => Promise<void>;

  constructor(private readonly deps: RefreshLeaseDeps) {
    this.#random = deps.random ?? Math.random;
    this.#sleep = deps.sleep ?? sleep;
  }

  /** A miss: the token someone fetched under the lease — this container or another one. */
  async obtain(req: KeyedRequest): Promise<Outcome> {
    if (req.forceRefresh) return this.#obtainForced(req);
    const { clock, store } = this.deps;
    const accepted = (entry: StoredEntry, nowMs: number) => entry.token !== undefined && req.accept(entry.token, nowMs);
    for (;;) {
      const nowMs = clock.nowMs();
      if (nowMs >= req.deadlineMs) {
        throw new UnavailableError('no time left in this invocation to wait for or take the refresh lease', 'lease_wait_timeout');
      }
      const owner = this.#newOwner();
      const attempt = await store.tryAcquireLease(req.cacheKey, owner, this.#leaseRequest(nowMs));
      if (attempt.acquired) {
        const current = attempt.entry.token;
        if (current && req.accept(current, nowMs) && !isRefreshDue(current, nowMs)) {
          await store.releaseLease(req.cacheKey, owner); // another holder wrote it just before
          return this.#remember(req, current, 'table');
        }
        return { token: await this.#refreshUnderLease(req, owner, attempt.entry), source: 'endpoint' };
      }
      const entry = await this.#waitWhileHeld(req, attempt.entry, accepted);
      if (accepted(entry, clock.nowMs())) return this.#remember(req, entry.token!, 'table');
      // The lease expired or was released without a token: try to take it.
    }
  }

  /**
   * A forced refresh: decided by forced-refresh.ts on the item as it is, then served, refused, waited for, or
   * fetched under the lease — claiming the interval's forced fetch in the same conditional write, so across all
   * containers one forced refresh per interval reaches the endpoint. A lost race shows the item as it now is.
   */
  async #obtainForced(req: KeyedRequest): Promise<Outcome> {
    const { clock, store, leaseDurationMs, forceRefreshIntervalMs } = this.deps;
    const accepted = (entry: StoredEntry, nowMs: number) => entry.token !== undefined && req.accept(entry.token, nowMs);
    let entry = await store.read(req.cacheKey, true);
    for (;;) {
      const nowMs = clock.nowMs();
      if (nowMs >= req.deadlineMs) {
        throw new UnavailableError('no time left in this invocation to wait for or take the refresh lease', 'lease_wait_timeout');
      }
      const next = decideForcedRefresh({
        token: entry.token,
        leaseHeld: isLeaseHeld(entry.lease?.untilEpochMs, nowMs, leaseDurationMs),
        blockedUntilMs: forcedFetchBlockedUntilMs(entry.forcedFetchAtEpochMs, nowMs, forceRefreshIntervalMs),
        rejectedTokenSha256: req.rejectedTokenSha256,
        minTtlSec: req.minTtlSec,
        nowMs,
      });
      if (next.step === 'serve') return this.#remember(req, next.token, 'table');
      if (next.step === 'refuse') throw forcedRefreshLimited(next.retryAfterSec, Math.round(forceRefreshIntervalMs / 1000));
      if (next.step === 'wait') {
        entry = await this.#waitWhileHeld(req, entry, accepted);
        continue;
      }
      const owner = this.#newOwner();
      const claim = next.claim ? { forceRefreshIntervalMs } : {};
      const attempt = await store.tryAcquireLease(req.cacheKey, owner, { ...this.#leaseRequest(nowMs), ...claim });
      if (!attempt.acquired) {
        entry = attempt.entry;
        continue;
      }
      if (accepted(attempt.entry, nowMs)) {
        await store.releaseLease(req.cacheKey, owner); // a token that answers this one was written just before
        return this.#remember(req, attempt.entry.token!, 'table');
      }
      return { token: await this.#refreshUnderLease(req, owner, attempt.entry), source: 'endpoint' };
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
      const attempt = await store.tryAcquireLease(req.cacheKey, owner, this.#leaseRequest(nowMs));
      const seen = newer(attempt.entry);
      if (!attempt.acquired) {
        // Quiet while the lease is held, but never longer than a lease can last, whatever the item says.
        const leaseUntilMs = attempt.entry.lease?.untilEpochMs ?? nowMs + REFRESH_RETRY_AFTER_MS;
        this.#quietUntilMs.set(req.cacheKey, Math.min(leaseUntilMs, nowMs + this.deps.leaseDurationMs));
        return seen ? this.#remember(req, seen, 'table') : current;
      }
      if (seen) {
        await store.releaseLease(req.cacheKey, owner);
        return this.#remember(req, seen, 'table');
      }
      return { token: await this.#refreshUnderLease(req, owner, attempt.entry, attempt.entry.token ?? current.token), source: 'endpoint' };
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
    const attempt = await store.tryAcquireLease(req.cacheKey, owner, this.#leaseRequest(nowMs));
    if (!attempt.acquired) return 'in_progress';
    const current = attempt.entry.token;
    if (current && !isRefreshDue(current, nowMs)) {
      await store.releaseLease(req.cacheKey, owner);
      return 'fresh';
    }
    await this.#refreshUnderLease(req, owner, attempt.entry);
    return 'refreshed';
  }

  /**
   * Polls the item (consistent reads, backoff with full jitter) while another container holds the lease, until
   * `done` or the lease is no longer held (expired, released, or never a lease a holder could set). Returns the
   * item as last read.
   */
  async #waitWhileHeld(req: KeyedRequest, first: StoredEntry, done: (entry: StoredEntry, nowMs: number) => boolean): Promise<StoredEntry> {
    const { clock, store, leaseDurationMs } = this.deps;
    const { deadlineMs } = req;
    let entry = first;
    for (let attempt = 0; ; attempt++) {
      const nowMs = clock.nowMs();
      const leaseUntilMs = entry.lease?.untilEpochMs;
      if (done(entry, nowMs) || leaseUntilMs === undefined || !isLeaseHeld(leaseUntilMs, nowMs, leaseDurationMs)) return entry;
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
      await this.#sleep(Math.min(backoffDelayMs(attempt, this.#random()), leaseUntilMs - nowMs, deadlineMs - nowMs));
      entry = await store.read(req.cacheKey, true);
    }
  }

  /** Fetches while holding the lease, then writes the token (replacing `seen` if it was unusable) and releases it. */
  async #refreshUnderLease(req: KeyedRequest, owner: string, seen: StoredEntry, previous = seen.token): Promise<CachedToken> {
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
      await store.writeToken(req.cacheKey, token, req.client.name, owner, seen.unusableCiphertext);
    } catch (err) {
      // KMS or the table failed: others cannot see this token, so let them take the lease now, not at expiry.
      req.log.warn('token not written to the table', { ...req.keyFields, ...errorLogFields(err) });
      await store.releaseLease(req.cacheKey, owner).catch(() => undefined);
    }
    return token;
  }

  #leaseRequest(nowMs: number) {
    return { nowMs, leaseDurationMs: this.deps.leaseDurationMs };
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
