/**
 * Pure decisions about a token's time: its expiry and refresh point from the endpoint's answer, whether it is fresh
 * enough for a caller, and the answer built from it.
 */
import { toEpochSec } from '../shared/clock';

/** A token as the broker keeps it (in memory; in the table its access token is encrypted). */
export interface CachedToken {
  readonly accessToken: string;
  /** Granted scopes, canonical (deduplicated, sorted). */
  readonly scopes: readonly string[];
  readonly issuedAtEpochSec: number;
  readonly expiresAtEpochSec: number;
  /** From then on, the first request that gets the refresh lease fetches a new token (see refreshAtFor). */
  readonly refreshAtEpochSec: number;
  /**
   * The endpoint answered a refresh with this same token (IdentityServer does, until the token expires): asking
   * again before it expires cannot give a newer one, so it is served until it expires and not refreshed ahead.
   */
  readonly reissued?: boolean;
}

/**
 * Issue time and expiry of a token whose request was sent at `requestSentAtMs` and answered with
 * `expiresInSec`. The clock starts when the request left, so the broker never believes a token lives longer
 * than it does.
 */
export const lifetimeOf = (requestSentAtMs: number, expiresInSec: number) => {
  const issuedAtEpochSec = toEpochSec(requestSentAtMs);
  const expiresAtEpochSec = issuedAtEpochSec + Math.floor(expiresInSec);
  return { issuedAtEpochSec, expiresAtEpochSec, refreshAtEpochSec: refreshAtFor(issuedAtEpochSec, expiresAtEpochSec) };
};

/**
 * Share of a token's lifetime after which it is refreshed ahead of expiry. At 75 %, a one-hour token is refreshed
 * with 15 minutes left: more than the longest `minTtlSeconds` a caller may ask (900 s) and more than
 * MIN_TTL_LIFETIME_SHARE of any token, so every caller is still served the old token while one request refreshes,
 * and a failing endpoint leaves a quarter of the lifetime to retry before anyone misses.
 */
export const REFRESH_AT_LIFETIME_SHARE = 0.75;
/** A caller's minTtl is capped at this share of the token's lifetime (see requiredRemainingSec). */
export const MIN_TTL_LIFETIME_SHARE = 0.25;

export const refreshAtFor = (issuedAtEpochSec: number, expiresAtEpochSec: number): number =>
  issuedAtEpochSec + Math.floor((expiresAtEpochSec - issuedAtEpochSec) * REFRESH_AT_LIFETIME_SHARE);

/** Whether a token has passed its refresh point. */
export const isRefreshDue = (token: CachedToken, nowMs: number): boolean => nowMs / 1000 >= token.refreshAtEpochSec;

export const remainingSec = (token: CachedToken, nowMs: number): number => token.expiresAtEpochSec - nowMs / 1000;

/**
 * The least remaining lifetime a cached token must have to be served. The caller's `minTtlSec`, but never more
 * than a quarter of the token's own lifetime (an endpoint that issues short tokens would otherwise make every
 * request a miss), and for a re-issued token only that it has not expired. Always at least one second.
 */
export const requiredRemainingSec = (token: CachedToken, minTtlSec: number): number =>
  token.reissued
    ? 1
    : Math.max(
        1,
        Math.min(minTtlSec, Math.floor((token.expiresAtEpochSec - token.issuedAtEpochSec) * MIN_TTL_LIFETIME_SHARE)),
      );

/** Whether a cached token may be served to a caller who accepts no less than `minTtlSec` of life. */
export const isServable = (token: CachedToken, nowMs: number, minTtlSec: number): boolean =>
  remainingSec(token, nowMs) >= requiredRemainingSec(token, minTtlSec);
