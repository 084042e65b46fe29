import { describe, expect, it } from 'vitest';
import {
  decideForcedRefresh,
  FORCE_REFRESH_LIMITED,
  type ForcedRefreshState,
  forcedRefreshLimited,
} from '../../../../functions/lib/cache/lease/forced-refresh';
import {
  CLOCK_SKEW_MS,
  forcedFetchBlockedUntilMs,
  isLeaseHeld,
} from '../../../../functions/lib/cache/lease/lease-rules';
import { type CachedToken, lifetimeOf } from '../../../../functions/lib/domain/cached-token';
import { sha256Hex } from '../../../../functions/lib/shared/hash';

const NOW_MS = Date.parse('2026-11-29T06:00:00Z');
const INTERVAL_MS = 30_000;
const LEASE_MS = 8_000;

const tokenAged = (ageSec: number, accessToken = 'current-token'): CachedToken => ({
  accessToken,
  scopes: ['a'],
  ...lifetimeOf(NOW_MS - ageSec * 1000, 3600),
});
const current = tokenAged(5);
const state = (over: Partial<ForcedRefreshState>): ForcedRefreshState => ({
  token: current,
  leaseHeld: false,
  blockedUntilMs: undefined,
  rejectedTokenSha256: sha256Hex(current.accessToken),
  minTtlSec: 60,
  nowMs: NOW_MS,
  ...over,
});
const inside = NOW_MS + 12_400; // the last forced fetch was 17.6 s ago

describe('forced refresh decision', () => {
  it('serves a token that is not the one reported rejected, inside the interval or not, lease held or not', () => {
    for (const blockedUntilMs of [undefined, inside]) {
      for (const leaseHeld of [false, true]) {
        expect(
          decideForcedRefresh(state({ blockedUntilMs, leaseHeld, rejectedTokenSha256: sha256Hex('an older token') })),
        ).toEqual({
          step: 'serve',
          token: current,
        });
      }
    }
  });

  it('fetches, claiming the interval and spending the budget, for the first forced refresh after a quiet interval, even for a seconds-old token', () => {
    const replacing = { step: 'fetch', claim: true, spendsBudget: true };
    expect(decideForcedRefresh(state({}))).toEqual(replacing);
    expect(decideForcedRefresh(state({ rejectedTokenSha256: undefined }))).toEqual(replacing);
  });

  it("refuses the current token's fingerprint inside the interval, with the seconds until the next forced fetch", () => {
    expect(decideForcedRefresh(state({ blockedUntilMs: inside }))).toEqual({ step: 'refuse', retryAfterSec: 13 });
    expect(decideForcedRefresh(state({ blockedUntilMs: NOW_MS + 1 }))).toEqual({ step: 'refuse', retryAfterSec: 1 });
  });

  it('serves the current token to a forced refresh without a fingerprint inside the interval', () => {
    expect(decideForcedRefresh(state({ blockedUntilMs: inside, rejectedTokenSha256: undefined }))).toEqual({
      step: 'serve',
      token: current,
    });
  });

  it('waits for a lease holder before deciding on the current token', () => {
    expect(decideForcedRefresh(state({ leaseHeld: true }))).toEqual({ step: 'wait' });
    expect(
      decideForcedRefresh(state({ leaseHeld: true, blockedUntilMs: inside, rejectedTokenSha256: undefined })),
    ).toEqual({ step: 'wait' });
  });

  it('is a plain miss when there is no servable token: no spent interval claimed, no budget spent', () => {
    const nearExpiry = tokenAged(3600 - 30);
    const plainMiss = { step: 'fetch', claim: false, spendsBudget: false };
    expect(decideForcedRefresh(state({ token: undefined, blockedUntilMs: inside }))).toEqual(plainMiss);
    expect(
      decideForcedRefresh(state({ token: nearExpiry, blockedUntilMs: inside, rejectedTokenSha256: sha256Hex('x') })),
    ).toEqual(plainMiss);
    expect(decideForcedRefresh(state({ token: undefined }))).toEqual({
      step: 'fetch',
      claim: true,
      spendsBudget: false,
    });
  });

  it('answers a refusal as temporarily_unavailable 503 with retryAfterSeconds in the OAuth body', () => {
    const err = forcedRefreshLimited(13, 30);
    expect(err.reason).toBe(FORCE_REFRESH_LIMITED);
    expect(err.toOAuth()).toEqual({
      error: 'temporarily_unavailable',
      error_description:
        'the current token is the one reported rejected, and forced refreshes of this scope set fetch at most once every 30 s; retry in 13 s',
      status: 503,
      retryAfterSeconds: 13,
    });
  });
});

describe('bounds on coordination state anyone with table write access can set', () => {
  it('holds others off with a lease only while it ends within REFRESH_LEASE_MS plus the clock skew', () => {
    expect(isLeaseHeld(undefined, NOW_MS, LEASE_MS)).toBe(false);
    expect(isLeaseHeld(NOW_MS - 1, NOW_MS, LEASE_MS)).toBe(false);
    expect(isLeaseHeld(NOW_MS, NOW_MS, LEASE_MS)).toBe(false);
    expect(isLeaseHeld(NOW_MS + 1, NOW_MS, LEASE_MS)).toBe(true);
    expect(isLeaseHeld(NOW_MS + LEASE_MS + CLOCK_SKEW_MS, NOW_MS, LEASE_MS)).toBe(true);
    expect(isLeaseHeld(NOW_MS + LEASE_MS + CLOCK_SKEW_MS + 1, NOW_MS, LEASE_MS)).toBe(false);
    expect(isLeaseHeld(Number.MAX_SAFE_INTEGER, NOW_MS, LEASE_MS)).toBe(false);
  });

  it('blocks forced fetches for at most the interval after the last one, ignoring a time in the future', () => {
    expect(forcedFetchBlockedUntilMs(undefined, NOW_MS, INTERVAL_MS)).toBeUndefined();
    expect(forcedFetchBlockedUntilMs(NOW_MS - INTERVAL_MS, NOW_MS, INTERVAL_MS)).toBeUndefined();
    expect(forcedFetchBlockedUntilMs(NOW_MS - INTERVAL_MS + 1, NOW_MS, INTERVAL_MS)).toBe(NOW_MS + 1);
    expect(forcedFetchBlockedUntilMs(NOW_MS, NOW_MS, INTERVAL_MS)).toBe(NOW_MS + INTERVAL_MS);
    expect(forcedFetchBlockedUntilMs(NOW_MS + CLOCK_SKEW_MS, NOW_MS, INTERVAL_MS)).toBe(
      NOW_MS + CLOCK_SKEW_MS + INTERVAL_MS,
    );
    expect(forcedFetchBlockedUntilMs(NOW_MS + CLOCK_SKEW_MS + 1, NOW_MS, INTERVAL_MS)).toBeUndefined();
    expect(forcedFetchBlockedUntilMs(Number.MAX_SAFE_INTEGER, NOW_MS, INTERVAL_MS)).toBeUndefined();
  });
});
