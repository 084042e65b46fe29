/**
 * Forced refreshes (a caller's token was rejected with 401) each cost an upstream request, and any caller can ask
 * for one, while LimitRail rate-limits the shared client. So across all containers, forced refreshes of one key
 * fetch at most once per FORCE_REFRESH_MIN_INTERVAL_SEC: the time of the last forced fetch is kept on the key's
 * item, claimed together with the refresh lease in one conditional write (cache/table/conditions.ts forcedFetchQuiet),
 * or in the container's memory while the table is down. Across keys, a caller's forced fetches are bounded by its
 * budget (force-budget.ts). This module only decides; table-lease.ts and in-memory-lease.ts do the I/O.
 */

import { type CachedToken, isServable } from '../../domain/cached-token';
import { type Reason, UnavailableError } from '../../shared/errors';
import { sha256Hex } from '../../shared/hash';

export const FORCE_REFRESH_LIMITED: Reason = 'force_refresh_limited';

export interface ForcedRefreshState {
  /** The current token of the key (authenticated), if any. */
  token: CachedToken | undefined;
  /** Another container holds the refresh lease (lease-rules.ts isLeaseHeld). */
  leaseHeld: boolean;
  /** Forced refreshes may not fetch before this (lease-rules.ts forcedFetchBlockedUntilMs); undefined: they may. */
  blockedUntilMs: number | undefined;
  /** The caller's fingerprint of the token it saw rejected; undefined when it gave none. */
  rejectedTokenSha256: string | undefined;
  minTtlSec: number;
  nowMs: number;
}

export type ForcedRefreshStep =
  /** Answer with this token, without an upstream request. */
  | { step: 'serve'; token: CachedToken }
  /** Another container is fetching: wait for its token, then decide again. */
  | { step: 'wait' }
  /**
   * Take the lease and fetch; `claim`: as this interval's forced fetch; `spendsBudget`: the fetch replaces a servable
   * token, so it spends the caller's budget (force-budget.ts).
   */
  | { step: 'fetch'; claim: boolean; spendsBudget: boolean }
  /** The current token is the rejected one and this interval's forced fetch is spent. */
  | { step: 'refuse'; retryAfterSec: number };

/**
 * What a forced refresh does:
 * - a token that is not the one reported rejected is served (no upstream request, whatever the interval);
 * - while another container holds the lease, wait for it;
 * - the first forced refresh after a quiet interval fetches at once, even if the token is seconds old;
 * - inside the interval, a forced refresh without a fingerprint gets the current token (so a herd of callers
 *   hitting 401 at once causes one upstream request), and one whose fingerprint is the current token is refused
 *   until the interval ends;
 * - with no servable token at all it is a plain miss, as for any request.
 * A fetch that replaces a servable token also spends the caller's budget across scope sets (force-budget.ts).
 */
export const decideForcedRefresh = (s: ForcedRefreshState): ForcedRefreshStep => {
  const token = s.token !== undefined && isServable(s.token, s.nowMs, s.minTtlSec) ? s.token : undefined;
  const isRejected =
    token !== undefined &&
    s.rejectedTokenSha256 !== undefined &&
    sha256Hex(token.accessToken) === s.rejectedTokenSha256;
  if (token && s.rejectedTokenSha256 !== undefined && !isRejected) return { step: 'serve', token };
  if (s.leaseHeld) return { step: 'wait' };
  if (s.blockedUntilMs === undefined) return { step: 'fetch', claim: true, spendsBudget: token !== undefined };
  if (!token) return { step: 'fetch', claim: false, spendsBudget: false };
  if (!isRejected) return { step: 'serve', token };
  return { step: 'refuse', retryAfterSec: Math.max(1, Math.ceil((s.blockedUntilMs - s.nowMs) / 1000)) };
};

/** The refusal: 503 with `retryAfterSeconds`, when the next forced refresh may fetch. */
export const forcedRefreshLimited = (retryAfterSec: number, intervalSec: number): UnavailableError =>
  new UnavailableError(
    `the current token is the one reported rejected, and forced refreshes of this scope set fetch at most once ` +
      `every ${intervalSec} s; retry in ${retryAfterSec} s`,
    FORCE_REFRESH_LIMITED,
    { retryAfterSeconds: retryAfterSec },
  );
