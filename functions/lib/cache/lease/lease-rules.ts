/**
 * What the coordination attributes on a key's item mean, as pure rules: the refresh lease (`leaseUntilEpochMs`)
 * and the last forced fetch (`forcedFetchAtEpochMs`). They change without a token write, so they cannot be bound
 * to the sealed token like the other fields; anyone who can write the table can set them. Each is bounded instead:
 * a value no broker could have written is ignored, so a written value delays others at most REFRESH_LEASE_MS
 * (lease) or FORCE_REFRESH_MIN_INTERVAL_SEC (forced fetch), plus CLOCK_SKEW_MS. These bounds are stated here only:
 * cache/table/conditions.ts writes them as DynamoDB conditions; decisions.ts and forced-refresh.ts decide with
 * them. The reading and the
 * conditions must agree on every value, or a container decides to take a lease its condition refuses: a value that
 * is not a number (coordinationTimeMs) counts as absent in both, and a lease time counts whoever is named as its
 * owner (none, or a value that is not a string: held by an unknown owner).
 */

/** How far apart two containers' clocks may be. Lambda hosts keep time with NTP: far below a second. */
export const CLOCK_SKEW_MS = 1_000;

/** A DynamoDB number as DynamoDB writes one (no blanks, no hex, no NaN or Infinity). */
const NUMBER_TEXT = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/**
 * A lease or forced-fetch time as stored: `numberText` is the attribute's number (undefined when it is missing or of
 * another type). Anything that is not a finite number counts as absent, as in the conditions
 * (`NOT attribute_type(x, :numberType)`); any number counts as written, fractional or not, as the conditions compare it.
 */
export const coordinationTimeMs = (numberText: string | undefined): number | undefined => {
  if (numberText === undefined || !NUMBER_TEXT.test(numberText)) return undefined;
  const n = Number(numberText);
  return Number.isFinite(n) ? n : undefined;
};

/** The latest end a lease taken now can have: a holder sets now + REFRESH_LEASE_MS, on a clock up to the skew ahead. */
export const latestLeaseEndMs = (nowMs: number, leaseDurationMs: number): number =>
  nowMs + leaseDurationMs + CLOCK_SKEW_MS;

/**
 * Whether a lease read from the table holds other containers off: it has not ended, and it ends no later than a
 * holder could have set it. A lease ending later was pinned by someone else and counts as expired: it can be taken
 * over at once. So whatever is written, a lease seen at `nowMs` delays the others until `latestLeaseEndMs` at most.
 */
export const isLeaseHeld = (leaseUntilEpochMs: number | undefined, nowMs: number, leaseDurationMs: number): boolean =>
  leaseUntilEpochMs !== undefined &&
  leaseUntilEpochMs > nowMs &&
  leaseUntilEpochMs <= latestLeaseEndMs(nowMs, leaseDurationMs);

/**
 * Until when forced refreshes of a key may not fetch again: the last forced fetch plus the interval; undefined when
 * the interval has passed (quiet). A forced fetch recorded in the future (beyond the skew) was not written by a
 * broker and is ignored, so it cannot block forced refreshes for longer than the interval.
 */
export const forcedFetchBlockedUntilMs = (
  forcedFetchAtEpochMs: number | undefined,
  nowMs: number,
  intervalMs: number,
): number | undefined =>
  forcedFetchAtEpochMs !== undefined &&
  forcedFetchAtEpochMs > nowMs - intervalMs &&
  forcedFetchAtEpochMs <= nowMs + CLOCK_SKEW_MS
    ? forcedFetchAtEpochMs + intervalMs
    : undefined;
