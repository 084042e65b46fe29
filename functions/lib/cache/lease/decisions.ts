/**
 * The lease protocol's decisions, pure: given the key's item as last read (LeaseView), what a request does next
 * (LeaseStep). table-lease.ts executes them in one loop; each way in is one decision function:
 *   - decideMiss (a miss): serve a token someone wrote, else wait for the holder or take the lease and fetch;
 *   - decideForced (a caller saw its token rejected): forced-refresh.ts decides, one forced fetch per interval per
 *     key, and one per interval per caller and client across keys (force-budget.ts);
 *   - decideRefreshAhead (past a token's refresh point): refresh if this request gets the lease, else serve the
 *     current token at once and leave the key alone while the lease is held;
 *   - decidePrewarm: refresh a missing or due token through the lease.
 * The lease bound and clock skew are lease-rules.ts's.
 */
import { type CachedToken, isRefreshDue, isServable } from '../../domain/cached-token';
import type { KeyedRequest } from '../../domain/token-request';
import type { PrewarmOutcome, StoredEntry } from '../../ports';
import type { BrokerError } from '../../shared/errors';
import { decideForcedRefresh, forcedRefreshLimited } from './forced-refresh';
import { forcedFetchBlockedUntilMs } from './lease-rules';

/** After a failed refresh ahead, this container leaves the key alone this long: no hot retry. */
export const REFRESH_RETRY_AFTER_MS = 5_000;

/** What a decision sees: the item as last read (undefined before any read) and whether this request holds the lease. */
export interface LeaseView {
  entry: StoredEntry | undefined;
  nowMs: number;
  /** Another container's lease holds this one off (lease-rules.ts isLeaseHeld). */
  heldByOther: boolean;
  /** This request has just taken the lease: the double check. */
  owned: boolean;
  /** With `owned`: the take also claimed the interval's forced fetch. */
  claimed?: boolean;
  /** This request's last attempt to take the lease failed (`entry` is the item as that attempt saw it). */
  lost: boolean;
}

export type LeaseStep<Y> =
  /** Answer with this token (releasing the lease when this request holds it). */
  | { step: 'serve'; token: CachedToken }
  /** Another container is fetching: poll the item, then decide again. */
  | { step: 'wait' }
  /** Try to take the lease; `claimForced`: as the interval's forced fetch. */
  | { step: 'take'; claimForced?: boolean }
  /**
   * This request holds the lease: fetch, write the token, release the lease. `spendsBudget`: the fetch replaces a
   * servable token on a forced refresh, so it spends the caller's forced-refresh budget first (force-budget.ts).
   */
  | { step: 'fetch'; spendsBudget?: boolean }
  /** Stop without a token of this request's own; the policy's result. */
  | { step: 'yield'; value: Y }
  /** Refuse the request. */
  | { step: 'refuse'; error: BrokerError };

export type LeaseDecision<Y> = (view: LeaseView) => LeaseStep<Y>;

/** A miss: serve a token that answers the request, else wait for the holder or take the lease and fetch. */
export const decideMiss =
  (accept: KeyedRequest['accept']): LeaseDecision<never> =>
  ({ entry, nowMs, heldByOther, owned }) => {
    const token = entry?.token;
    if (owned)
      return token && accept(token, nowMs) && !isRefreshDue(token, nowMs)
        ? { step: 'serve', token }
        : { step: 'fetch' };
    if (token && accept(token, nowMs)) return { step: 'serve', token };
    return heldByOther ? { step: 'wait' } : { step: 'take' };
  };

/**
 * A forced refresh: forced-refresh.ts decides before the lease; with it, serve what answers the request or fetch. A
 * take that did not claim the forced fetch (the interval's was spent and there was no servable token) makes it a
 * plain miss: without a fingerprint, a token written meanwhile answers it as it answers a miss.
 */
export const decideForced =
  (req: KeyedRequest, forceRefreshIntervalMs: number): LeaseDecision<never> =>
  ({ entry, nowMs, heldByOther, owned, claimed }) => {
    if (owned) {
      // The double check: what answers the request is served; a fetch that replaces a servable token spends the budget.
      const token = entry?.token;
      if (token && req.accept(token, nowMs)) return { step: 'serve', token };
      const asMiss =
        !claimed &&
        req.rejectedTokenSha256 === undefined &&
        token !== undefined &&
        isServable(token, nowMs, req.minTtlSec) &&
        !isRefreshDue(token, nowMs);
      if (asMiss) return { step: 'serve', token };
      return { step: 'fetch', spendsBudget: token !== undefined && isServable(token, nowMs, req.minTtlSec) };
    }
    const next = decideForcedRefresh({
      token: entry?.token,
      leaseHeld: heldByOther,
      blockedUntilMs: forcedFetchBlockedUntilMs(entry?.forcedFetchAtEpochMs, nowMs, forceRefreshIntervalMs),
      rejectedTokenSha256: req.rejectedTokenSha256,
      minTtlSec: req.minTtlSec,
      nowMs,
    });
    switch (next.step) {
      case 'serve':
        return { step: 'serve', token: next.token };
      case 'wait':
        return { step: 'wait' };
      case 'fetch':
        return { step: 'take', claimForced: next.claim };
      case 'refuse':
        return {
          step: 'refuse',
          error: forcedRefreshLimited(next.retryAfterSec, Math.round(forceRefreshIntervalMs / 1000)),
        };
    }
  };

/**
 * Refresh ahead of `current`: a newer token someone wrote is served if it answers the request (a forced refresh may
 * have reported it rejected: then `current` is served, and nothing is refreshed, the newer token not being due); if
 * another container has the lease this one gives up (serving `current`) and stays quiet until that lease ends, never
 * longer than a lease can last. It does not wait: every caller meanwhile is served the current token.
 */
export const decideRefreshAhead =
  (
    current: CachedToken,
    leaseDurationMs: number,
    accept: KeyedRequest['accept'],
  ): LeaseDecision<{ quietUntilMs: number }> =>
  ({ entry, nowMs, owned, lost }) => {
    const token = entry?.token;
    if (token && token.expiresAtEpochSec > current.expiresAtEpochSec && !isRefreshDue(token, nowMs))
      return accept(token, nowMs) ? { step: 'serve', token } : { step: 'yield', value: { quietUntilMs: nowMs } };
    if (owned) return { step: 'fetch' };
    if (!lost) return { step: 'take' };
    const leaseUntilMs = entry?.lease?.untilEpochMs ?? nowMs + REFRESH_RETRY_AFTER_MS;
    return { step: 'yield', value: { quietUntilMs: Math.min(leaseUntilMs, nowMs + leaseDurationMs) } };
  };

/** Prewarm: a token not yet due is fresh; a lease someone else has means another container is at it; else refresh. */
export const decidePrewarm: LeaseDecision<PrewarmOutcome> = ({ entry, nowMs, owned, lost }) => {
  const token = entry?.token;
  if (token && !isRefreshDue(token, nowMs)) return owned ? { step: 'serve', token } : { step: 'yield', value: 'fresh' };
  if (owned) return { step: 'fetch' };
  return lost ? { step: 'yield', value: 'in_progress' } : { step: 'take' };
};
