/**
 * Single flight across containers: the refresh lease on a key's DynamoDB item (TableLease, the LeaseProtocol of
 * ports.ts). The protocol is written once, as a loop (`#run`) that performs one pure decision (decisions.ts) at a time:
 *
 *   look at the item -> decide: serve a token / wait for the holder / take the lease / give up
 *   took the lease   -> decide again on the item as it now is (the double check): serve it, or fetch and write
 *
 * Waiting polls the item (consistent reads, backoff with full jitter), bounded by the lease and the invocation's
 * deadline; a holder that dies blocks others only until its lease expires, and a lease nobody could have taken
 * (pinned far out) counts as expired (lease-rules.ts states the bound and the clock skew). A forced fetch that
 * replaces a servable token spends its caller's budget once it holds the lease, just before fetching
 * (force-budget.ts). Every item read passes the request's vetTableToken (a rolled-back token reads as absent).
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CachedToken } from '../../domain/cached-token';
import type { KeyedRequest } from '../../domain/token-request';
import type { LeaseProtocol, Outcome, PrewarmOutcome, StoredEntry, TokenProvider, TokenTable } from '../../ports';
import { fullJitterDelayMs } from '../../shared/backoff';
import type { Clock } from '../../shared/clock';
import { errorLogFields, UnavailableError } from '../../shared/errors';
import type { MemoryTokenCache } from '../memory-cache';
import {
  decideForced,
  decideMiss,
  decidePrewarm,
  decideRefreshAhead,
  type LeaseDecision,
  REFRESH_RETRY_AFTER_MS,
} from './decisions';
import { budgetRetryAfterSec, forceBudgetSpent } from './force-budget';
import { isLeaseHeld } from './lease-rules';

/** Polling a held lease: 25 ms doubling to 400 ms, full jitter, at least 5 ms. */
const POLL = { baseMs: 25, capMs: 400, floorMs: 5 } as const;

type RunResult<Y> =
  | { kind: 'served'; token: CachedToken }
  | { kind: 'fetched'; token: CachedToken; written: boolean }
  | { kind: 'yielded'; value: Y };

/** A served or fetched token as an Outcome; one the table could not take is marked (`aroundTable`). */
const outcomeOf = (result: Exclude<RunResult<unknown>, { kind: 'yielded' }>): Outcome =>
  result.kind === 'served'
    ? { token: result.token, source: 'table' }
    : { token: result.token, source: 'endpoint', ...(result.written ? {} : { aroundTable: true as const }) };

interface Policy<Y> {
  decide: LeaseDecision<Y>;
  /** How the item is read before the first decision; 'none' when the caller has just read it (a miss). */
  firstRead: 'none' | 'eventual' | 'consistent';
  /** The token a fetch replaces (to recognize a re-issued token); default the item's. */
  previous?: (entry: StoredEntry) => CachedToken | undefined;
}

export interface TableLeaseDeps {
  store: TokenTable;
  fetcher: TokenProvider;
  memory: MemoryTokenCache;
  clock: Clock;
  leaseDurationMs: number;
  /** Forced refreshes of a key fetch at most once per this interval (FORCE_REFRESH_MIN_INTERVAL_SEC). */
  forceRefreshIntervalMs: number;
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export class TableLease implements LeaseProtocol {
  readonly #containerId = randomUUID();
  #leases = 0;
  /** Per key: no refresh-ahead attempt before this time (lease seen held, or a refresh just failed). */
  readonly #quietUntilMs = new Map<string, number>();
  readonly #random: () => number;
  readonly #sleep: (ms: number) => Promise<void>;

  constructor(private readonly deps: TableLeaseDeps) {
    this.#random = deps.random ?? Math.random;
    this.#sleep = deps.sleep ?? sleep;
  }

  /** A miss: the token someone fetched under the lease — this container or another one. */
  async obtain(req: KeyedRequest): Promise<Outcome> {
    const policy: Policy<never> = req.forceRefresh
      ? { decide: decideForced(req, this.deps.forceRefreshIntervalMs), firstRead: 'consistent' }
      : { decide: decideMiss(req.accept), firstRead: 'none' };
    const result = await this.#run(req, policy);
    if (result.kind === 'yielded') throw new Error('unreachable: a miss never yields');
    return outcomeOf(result);
  }

  /**
   * Past the refresh point with a still-valid token: refresh if this request gets the lease, otherwise answer
   * with the current token (or a newer one another container wrote) at once. Never fails: on any error the
   * current token is served and the key is left alone for REFRESH_RETRY_AFTER_MS.
   */
  async refreshAhead(req: KeyedRequest, current: Outcome): Promise<Outcome> {
    const nowMs = this.deps.clock.nowMs();
    const quietUntilMs = this.#quietUntilMs.get(req.cacheKey);
    if (quietUntilMs !== undefined) {
      if (quietUntilMs > nowMs) return current;
      this.#quietUntilMs.delete(req.cacheKey);
    }
    try {
      const result = await this.#run(req, {
        decide: decideRefreshAhead(current.token, this.deps.leaseDurationMs, req.accept),
        firstRead: 'eventual',
        previous: (entry) => entry.token ?? current.token,
      });
      if (result.kind === 'yielded') {
        this.#quietUntilMs.set(req.cacheKey, result.value.quietUntilMs);
        return current;
      }
      return outcomeOf(result);
    } catch (err) {
      this.#quietUntilMs.set(req.cacheKey, this.deps.clock.nowMs() + REFRESH_RETRY_AFTER_MS);
      req.log.warn('refresh ahead failed; serving the current token', { ...req.keyFields, ...errorLogFields(err) });
      return current;
    }
  }

  /** For the prewarm function: refresh when the token is missing or past its refresh point, through the lease. */
  async refreshIfDue(req: KeyedRequest): Promise<PrewarmOutcome> {
    const result = await this.#run(req, { decide: decidePrewarm, firstRead: 'consistent' });
    return result.kind === 'yielded' ? result.value : result.kind === 'fetched' ? 'refreshed' : 'fresh';
  }

  /** The protocol: decide, act, decide again, until a token is served or fetched, or the policy gives up. */
  async #run<Y>(req: KeyedRequest, policy: Policy<Y>): Promise<RunResult<Y>> {
    const { clock, store, leaseDurationMs, forceRefreshIntervalMs } = this.deps;
    let entry = policy.firstRead === 'none' ? undefined : await this.#read(req, policy.firstRead === 'consistent');
    let waits = 0;
    let lost = false;
    let lostTakes = 0;
    for (;;) {
      const nowMs = clock.nowMs();
      const heldByOther = isLeaseHeld(entry?.lease?.untilEpochMs, nowMs, leaseDurationMs);
      const next = policy.decide({ entry, nowMs, heldByOther, owned: false, lost });
      if (next.step === 'serve') return { kind: 'served', token: this.#remember(req, next.token) };
      if (next.step === 'yield') return { kind: 'yielded', value: next.value };
      if (next.step === 'refuse') throw next.error;
      if (nowMs >= req.deadlineMs) {
        throw new UnavailableError(
          waits > 0
            ? 'another container is fetching this token and it did not arrive before this invocation ran out of time'
            : 'no time left in this invocation to wait for or take the refresh lease',
          'lease_wait_timeout',
        );
      }
      if (next.step === 'wait') {
        if (waits === 0) {
          req.metrics?.count('LeaseWaits');
          req.log.debug('waiting for the refresh lease holder', req.keyFields);
        }
        const leaseUntilMs = entry?.lease?.untilEpochMs ?? nowMs + POLL.capMs;
        entry = await this.#pollAfter(req, waits, nowMs, Math.min(leaseUntilMs, req.deadlineMs));
        waits += 1;
        lost = false;
        continue;
      }
      if (next.step === 'fetch') throw new Error('unreachable: fetch without the lease');
      if (lost) {
        // A take just lost, and the item as that attempt saw it says take again: the table's condition and this
        // reading of the item disagree. Never retry at once: back off as a poll would (bounded by the deadline), read
        // the item again and decide on that.
        entry = await this.#pollAfter(req, lostTakes, nowMs, req.deadlineMs);
        lostTakes += 1;
        lost = false;
        continue;
      }
      waits = 0;
      const owner = this.#newOwner();
      const claim = next.claimForced ? { forceRefreshIntervalMs } : {};
      const attempt = await store.tryAcquireLease(req.cacheKey, owner, { nowMs, leaseDurationMs, ...claim });
      entry = this.#vet(req, attempt.entry);
      lost = !attempt.acquired;
      if (lost) continue;
      const again = policy.decide({ entry, nowMs, heldByOther: false, owned: true, claimed: !!next.claimForced, lost });
      if (again.step === 'fetch') {
        if (again.spendsBudget) await this.#spendBudget(req, owner, next.claimForced === true);
        const previous = policy.previous ? policy.previous(entry) : entry.token;
        return { kind: 'fetched', ...(await this.#fetchUnderLease(req, owner, entry, previous)) };
      }
      await store.releaseLease(req.cacheKey, owner); // what answers the request was written just before
      if (again.step === 'serve') return { kind: 'served', token: this.#remember(req, again.token) };
      if (again.step === 'yield') return { kind: 'yielded', value: again.value };
      if (again.step === 'refuse') throw again.error;
    }
  }

  /** Reads the item; a table token the request does not trust (a rollback) reads as absent. */
  async #read(req: KeyedRequest, consistent: boolean): Promise<StoredEntry> {
    return this.#vet(req, await this.deps.store.read(req.cacheKey, consistent));
  }

  #vet(req: KeyedRequest, entry: StoredEntry): StoredEntry {
    if (!entry.token || !req.vetTableToken || req.vetTableToken(entry.token)) return entry;
    const { token: _refused, ...rest } = entry;
    return rest;
  }

  /**
   * Holding the key's lease, about to fetch: spends the caller's forced-refresh budget, or gives the lease (and the
   * key's forced fetch this take claimed) back and refuses the request (force-budget.ts).
   */
  async #spendBudget(req: KeyedRequest, owner: string, claimedForced: boolean): Promise<void> {
    const { clock, store, forceRefreshIntervalMs: intervalMs } = this.deps;
    if (req.forceBudgetKey === undefined) return;
    const nowMs = clock.nowMs();
    const spent = await store.claimForceBudget(req.forceBudgetKey, { nowMs, intervalMs }).catch(async (err) => {
      await store.releaseLease(req.cacheKey, owner).catch(() => undefined);
      throw err;
    });
    if (spent.claimed) return;
    await store.releaseLease(req.cacheKey, owner, { forcedFetch: claimedForced }).catch(() => undefined);
    throw forceBudgetSpent(budgetRetryAfterSec(spent.spentAtEpochMs, nowMs, intervalMs), Math.round(intervalMs / 1000));
  }

  /** One poll step: sleeps a backoff step (full jitter, never past `untilMs`), then reads the item consistently. */
  async #pollAfter(req: KeyedRequest, attempt: number, nowMs: number, untilMs: number): Promise<StoredEntry> {
    await this.#sleep(Math.min(fullJitterDelayMs(attempt, this.#random(), POLL), untilMs - nowMs));
    return this.#read(req, true);
  }

  /** Fetches while holding the lease, then writes the token (replacing `seen` if it was unusable) and releases it. */
  async #fetchUnderLease(
    req: KeyedRequest,
    owner: string,
    seen: StoredEntry,
    previous: CachedToken | undefined,
  ): Promise<{ token: CachedToken; written: boolean }> {
    const { clock, fetcher, store } = this.deps;
    // Retries may outlast the lease: renew it before each one, so no other container starts a second fetch.
    const beforeRetry = async () => {
      await store.renewLease(req.cacheKey, owner, clock.nowMs() + this.deps.leaseDurationMs).catch(() => undefined);
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
      return { token, written: true };
    } catch (err) {
      // KMS or the table failed: others cannot see this token, so let them take the lease now, not at expiry.
      req.log.warn('token not written to the table', { ...req.keyFields, ...errorLogFields(err) });
      await store.releaseLease(req.cacheKey, owner).catch(() => undefined);
      return { token, written: false };
    }
  }

  #remember(req: KeyedRequest, token: CachedToken): CachedToken {
    this.deps.memory.set(req.cacheKey, token);
    return token;
  }

  #newOwner(): string {
    this.#leases += 1;
    return `${this.#containerId}:${this.#leases}`;
  }
}
