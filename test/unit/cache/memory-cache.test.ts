import { describe, expect, it } from 'vitest';
import { MemoryTokenCache } from '../../../functions/lib/cache/memory-cache';
import { clockAt, tokenIssuedAt } from '../../support/fakes/clock';

describe('memory cache', () => {
  it('drops expired entries and evicts the least recently used beyond its bound', () => {
    const clock = clockAt('2026-11-29T06:00:00Z');
    const cache = new MemoryTokenCache(2);
    cache.set('k1', tokenIssuedAt(clock.nowMs()));
    cache.set('k2', tokenIssuedAt(clock.nowMs()));
    cache.get('k1', clock.nowMs());
    cache.set('k3', tokenIssuedAt(clock.nowMs()));
    expect(cache.get('k2', clock.nowMs())).toBeUndefined();
    expect(cache.get('k1', clock.nowMs())).toBeDefined();
    clock.advanceSec(3600);
    expect(cache.get('k1', clock.nowMs())).toBeUndefined();
    expect(cache.size).toBe(1);
  });

  it('does not replace a token with one that expires sooner', () => {
    const clock = clockAt('2026-11-29T06:00:00Z');
    const cache = new MemoryTokenCache(10);
    const newer = tokenIssuedAt(clock.nowMs() + 60_000);
    cache.set('k', newer);
    cache.set('k', tokenIssuedAt(clock.nowMs()));
    expect(cache.get('k', clock.nowMs())).toBe(newer);
  });

  it('replaces a token with a later-expiring one, and with its re-issued copy (same expiry, refreshed only at expiry)', () => {
    const clock = clockAt('2026-11-29T06:00:00Z');
    const cache = new MemoryTokenCache(10);
    cache.set('k', tokenIssuedAt(clock.nowMs()));
    const later = tokenIssuedAt(clock.nowMs() + 60_000);
    cache.set('k', later);
    expect(cache.get('k', clock.nowMs())).toBe(later);
    const reissued = { ...later, refreshAtEpochSec: later.expiresAtEpochSec, reissued: true };
    cache.set('k', reissued);
    expect(cache.get('k', clock.nowMs())).toBe(reissued);
  });
});
