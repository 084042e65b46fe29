/**
 * The lease protocol while the token table is down (InMemoryLease, a LeaseProtocol of ports.ts): no coordination
 * across containers is possible, so this container fetches directly and bounds forced refreshes by its own memory of
 * each key's last forced fetch (the same decision, forced-refresh.ts, as with the table) and of each caller's budget
 * (force-budget.ts). The broker switches to it
 * for a request whose lease attempt found the table unavailable.
 */
import type { KeyedRequest } from '../../domain/token-request';
import type { LeaseProtocol, Outcome, PrewarmOutcome, TokenProvider } from '../../ports';
import type { Clock } from '../../shared/clock';
import type { MemoryTokenCache } from '../memory-cache';
import { forceBudgetSpent, MemoryForceBudget } from './force-budget';
import { decideForcedRefresh, forcedRefreshLimited } from './forced-refresh';
import { forcedFetchBlockedUntilMs } from './lease-rules';

export interface InMemoryLeaseDeps {
  fetcher: TokenProvider;
  memory: MemoryTokenCache;
  clock: Clock;
  /** Forced refreshes of a key fetch at most once per this interval (FORCE_REFRESH_MIN_INTERVAL_SEC). */
  forceRefreshIntervalMs: number;
}

export class InMemoryLease implements LeaseProtocol {
  /** Per key: when a forced refresh last fetched in this container. */
  readonly #forcedFetchAtMs = new Map<string, number>();
  /** Per caller and client: its forced-refresh budget, in this container (force-budget.ts). */
  readonly #budgets: MemoryForceBudget;

  constructor(private readonly deps: InMemoryLeaseDeps) {
    this.#budgets = new MemoryForceBudget(deps.forceRefreshIntervalMs);
  }

  /**
   * A miss while the table is down: fetch directly (the broker's single flight keeps it to one per key in this
   * container). A forced refresh is bounded as with the table, by this container's memory of the key's last forced
   * fetch and of its caller's budget.
   */
  async obtain(req: KeyedRequest): Promise<Outcome> {
    if (!req.forceRefresh) return this.#fetchDirectly(req);
    const nowMs = this.deps.clock.nowMs();
    const intervalMs = this.deps.forceRefreshIntervalMs;
    const next = decideForcedRefresh({
      token: this.deps.memory.get(req.cacheKey, nowMs),
      leaseHeld: false,
      blockedUntilMs: forcedFetchBlockedUntilMs(this.#forcedFetchAtMs.get(req.cacheKey), nowMs, intervalMs),
      rejectedTokenSha256: req.rejectedTokenSha256,
      minTtlSec: req.minTtlSec,
      nowMs,
    });
    if (next.step === 'serve') return { token: next.token, source: 'memory' };
    const intervalSec = Math.round(intervalMs / 1000);
    if (next.step === 'refuse') throw forcedRefreshLimited(next.retryAfterSec, intervalSec);
    if (next.step === 'fetch' && next.spendsBudget && req.forceBudgetKey !== undefined) {
      const budget = this.#budgets.claim(req.forceBudgetKey, nowMs);
      if (!budget.claimed) throw forceBudgetSpent(budget.retryAfterSec, intervalSec);
    }
    if (next.step === 'fetch' && next.claim) {
      for (const [key, atMs] of this.#forcedFetchAtMs)
        if (atMs <= nowMs - intervalMs) this.#forcedFetchAtMs.delete(key);
      this.#forcedFetchAtMs.set(req.cacheKey, nowMs);
    }
    return this.#fetchDirectly(req);
  }

  async #fetchDirectly(req: KeyedRequest): Promise<Outcome> {
    const token = await this.deps.fetcher.fetch(req);
    this.deps.memory.set(req.cacheKey, token);
    return { token, source: 'endpoint', aroundTable: true };
  }

  /** Nothing to coordinate: the current token is served until a miss fetches. */
  async refreshAhead(_req: KeyedRequest, current: Outcome): Promise<Outcome> {
    return current;
  }

  async refreshIfDue(req: KeyedRequest): Promise<PrewarmOutcome> {
    await this.obtain(req);
    return 'refreshed';
  }
}
