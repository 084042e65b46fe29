import { describe, expect, it } from 'vitest';
import { toTokenAnswer } from '../../../functions/lib/domain/answer';
import { isRefreshDue, isServable, lifetimeOf } from '../../../functions/lib/domain/cached-token';
import { clockAt, tokenIssuedAt } from '../../support/fakes/clock';

describe('token lifetime', () => {
  it('counts the lifetime from when the request was sent, in whole seconds', () => {
    expect(lifetimeOf(Date.parse('2026-11-29T06:00:00.900Z'), 3600.7)).toEqual({
      issuedAtEpochSec: Date.parse('2026-11-29T06:00:00Z') / 1000,
      expiresAtEpochSec: Date.parse('2026-11-29T07:00:00Z') / 1000,
      refreshAtEpochSec: Date.parse('2026-11-29T06:45:00Z') / 1000,
    });
  });

  it('answers the remaining lifetime, not the original one', () => {
    const clock = clockAt('2026-11-29T06:00:00Z');
    const token = tokenIssuedAt(clock.nowMs());
    clock.advanceSec(188);
    expect(toTokenAnswer(token, 'limitrail', clock.nowMs())).toEqual({
      access_token: 'tok',
      token_type: 'Bearer',
      expires_in: 3412,
      expires_at: '2026-11-29T07:00:00Z',
      scope: 'a',
      client: 'limitrail',
    });
  });

  it('serves a token until less than minTtl remains', () => {
    const clock = clockAt('2026-11-29T06:00:00Z');
    const token = tokenIssuedAt(clock.nowMs());
    clock.advanceSec(3600 - 120);
    expect(isServable(token, clock.nowMs(), 120)).toBe(true);
    clock.advanceSec(1);
    expect(isServable(token, clock.nowMs(), 120)).toBe(false);
    expect(isServable(token, clock.nowMs(), 60)).toBe(true);
  });

  it('never serves an expired token, even with minTtl 0', () => {
    const clock = clockAt('2026-11-29T06:00:00Z');
    const token = tokenIssuedAt(clock.nowMs());
    clock.advanceSec(3600);
    expect(isServable(token, clock.nowMs(), 0)).toBe(false);
  });

  it('caps minTtl at a quarter of the lifetime of short-lived tokens so they still get reused', () => {
    const clock = clockAt('2026-11-29T06:00:00Z');
    const token = tokenIssuedAt(clock.nowMs(), 600);
    clock.advanceSec(450);
    expect(isServable(token, clock.nowMs(), 900)).toBe(true);
    clock.advanceSec(1);
    expect(isServable(token, clock.nowMs(), 900)).toBe(false);
  });

  it("puts the refresh point at 75 % of the lifetime, before any caller's minTtl cut-off", () => {
    const clock = clockAt('2026-11-29T06:00:00Z');
    const token = tokenIssuedAt(clock.nowMs());
    clock.advanceSec(2699);
    expect(isRefreshDue(token, clock.nowMs())).toBe(false);
    clock.advanceSec(1);
    expect(isRefreshDue(token, clock.nowMs())).toBe(true);
    expect(isServable(token, clock.nowMs(), 900)).toBe(true);
  });

  it('serves a re-issued token until it expires, whatever minTtl', () => {
    const clock = clockAt('2026-11-29T06:00:00Z');
    const token = { ...tokenIssuedAt(clock.nowMs()), reissued: true };
    clock.advanceSec(3598);
    expect(isServable(token, clock.nowMs(), 900)).toBe(true);
    clock.advanceSec(2);
    expect(isServable(token, clock.nowMs(), 0)).toBe(false);
  });
});
