/**
 * A caller's forced-refresh budget. The per-key bound (forced-refresh.ts) keeps one scope set to one forced fetch per
 * FORCE_REFRESH_MIN_INTERVAL_SEC, but a caller granted n scopes has 2^n - 1 scope sets, each a key of its own. So a
 * forced fetch that replaces a servable token also spends its caller's budget: one per interval per (proven principal,
 * client), across every scope set and every container. The budget lives on an item of its own in the token table
 * (domain/cache-key.ts forceBudgetKeyFor), spent with a conditional write (conditions.ts forceBudgetUnspent), and in
 * the container's memory while the table is down (MemoryForceBudget). Like the lease, its time cannot be bound to a
 * sealed token, so it is bounded instead: a time nobody could have written (beyond the clock skew) counts as none, so a
 * table writer can delay a caller's forced refreshes by at most one interval per write (lease-rules.ts).
 *
 * A forced refresh answered without an upstream request spends nothing: the budget is spent only by the request that
 * holds the key's lease and, on the item as it now is (the double check), is about to fetch a token to replace a
 * servable one. A herd of one caller's requests for one key thus waits for that holder and gets its token, as before.
 * A holder over budget fetches nothing: it gives the lease back, with the key's forced fetch its take claimed (so
 * another caller's report of the same token can still fetch), and is refused. A forced refresh of a key with no
 * servable token is a plain miss, which any request would fetch: it needs no budget. Over budget: 503
 * temporarily_unavailable, `force_refresh_budget`, with `retryAfterSeconds`.
 */
import { type Reason, UnavailableError } from '../../shared/errors';
import { forcedFetchBlockedUntilMs } from './lease-rules';

export const FORCE_REFRESH_BUDGET: Reason = 'force_refresh_budget';

/** When a spent budget allows the next forced fetch, in whole seconds from now (at least 1). */
export const budgetRetryAfterSec = (spentAtEpochMs: number | undefined, nowMs: number, intervalMs: number): number => {
  const blockedUntilMs = forcedFetchBlockedUntilMs(spentAtEpochMs, nowMs, intervalMs) ?? nowMs;
  return Math.max(1, Math.ceil((blockedUntilMs - nowMs) / 1000));
};

/** The refusal: 503 with `retryAfterSeconds`, when this caller's next forced refresh may fetch. */
export const forceBudgetSpent = (retryAfterSec: number, intervalSec: number): UnavailableError =>
  new UnavailableError(
    `your forced refreshes with this client fetch at most once every ${intervalSec} s, whatever the scopes, and one ` +
      `already fetched within that time; retry in ${retryAfterSec} s`,
    FORCE_REFRESH_BUDGET,
    { retryAfterSeconds: retryAfterSec },
  );

/** The budgets while the table is down: this container's memory of each caller's last forced fetch. */
export class MemoryForceBudget {
  /** Per budget key: when a forced fetch last spent it in this container. */
  readonly #spentAtMs = new Map<string, number>();

  constructor(private readonly intervalMs: number) {}

  /** Spends `budgetKey`'s budget now, or says in how many seconds it may be spent again. */
  claim(budgetKey: string, nowMs: number): { claimed: true } | { claimed: false; retryAfterSec: number } {
    for (const [key, atMs] of this.#spentAtMs) if (atMs <= nowMs - this.intervalMs) this.#spentAtMs.delete(key);
    const spentAtMs = this.#spentAtMs.get(budgetKey);
    if (forcedFetchBlockedUntilMs(spentAtMs, nowMs, this.intervalMs) !== undefined)
      return { claimed: false, retryAfterSec: budgetRetryAfterSec(spentAtMs, nowMs, this.intervalMs) };
    this.#spentAtMs.set(budgetKey, nowMs);
    return { claimed: true };
  }
}
