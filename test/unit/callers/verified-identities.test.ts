import { describe, expect, it } from 'vitest';
import {
  MAX_CACHED_PROOFS,
  MAX_PROOFS_PER_PRINCIPAL,
  VerifiedIdentities,
} from '../../../functions/lib/callers/verified-identities';
import type { Caller } from '../../../functions/lib/domain/caller';

/** The verified-identity cache's eviction: least recently used first, a cap per principal, fair when full. */
const NOW = Date.parse('2026-11-29T08:00:00Z');
const VALID = NOW + 300_000;
const session = (role: string, name: string): Caller => ({
  arn: `arn:aws:sts::111111111111:assumed-role/${role}/${name}`,
  accountId: '111111111111',
  principalOrgId: undefined,
});
const user = (name: string): Caller => ({
  arn: `arn:aws:iam::111111111111:user/${name}`,
  accountId: '111111111111',
  principalOrgId: undefined,
});

describe('the verified-identity cache', () => {
  it('holds an identity until its proof goes stale', () => {
    const cache = new VerifiedIdentities();
    cache.set('a', user('ci'), NOW + 1_000, NOW);
    expect(cache.has('a', NOW + 999)).toBe(true);
    expect(cache.has('a', NOW + 1_000)).toBe(false);
    expect(cache.get('a', NOW + 999)).toEqual(user('ci'));
    expect(cache.get('a', NOW + 1_000)).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('evicts the least recently used entry, a hit counting as a use', () => {
    const cache = new VerifiedIdentities(3, 3);
    cache.set('a', user('a'), VALID, NOW);
    cache.set('b', user('b'), VALID, NOW);
    cache.set('c', user('c'), VALID, NOW);
    expect(cache.get('a', NOW)).toEqual(user('a')); // a is now the most recent
    cache.set('d', user('d'), VALID, NOW);
    expect(cache.has('a', NOW)).toBe(true);
    expect(cache.has('b', NOW)).toBe(false);
    expect(cache.has('c', NOW)).toBe(true);
  });

  it('keeps at most MAX_PROOFS_PER_PRINCIPAL entries per principal, the sessions of one role counting as one', () => {
    const cache = new VerifiedIdentities();
    cache.set('other', user('reporting'), VALID, NOW);
    for (let i = 0; i < 1_000; i++) cache.set(`variant-${i}`, session('billing', `s-${i % 7}`), VALID, NOW);
    expect(cache.size).toBe(MAX_PROOFS_PER_PRINCIPAL + 1);
    expect(cache.has('other', NOW)).toBe(true);
    // The principal's own most recent proofs are the ones kept.
    expect(cache.has('variant-999', NOW)).toBe(true);
    expect(cache.has(`variant-${999 - MAX_PROOFS_PER_PRINCIPAL}`, NOW)).toBe(false);
  });

  it('makes room in a full cache from the principal holding the most entries, never from one holding fewer', () => {
    const cache = new VerifiedIdentities(MAX_CACHED_PROOFS, MAX_PROOFS_PER_PRINCIPAL);
    cache.set('victim', user('victim'), VALID, NOW); // the least recently used entry of all
    const flooders = Math.ceil(MAX_CACHED_PROOFS / MAX_PROOFS_PER_PRINCIPAL) + 2;
    for (let p = 0; p < flooders; p++)
      for (let i = 0; i < MAX_PROOFS_PER_PRINCIPAL; i++) cache.set(`p${p}-${i}`, user(`flood-${p}`), VALID, NOW);
    expect(cache.size).toBe(MAX_CACHED_PROOFS);
    expect(cache.has('victim', NOW)).toBe(true);
  });

  it('drops stale entries first when full', () => {
    const cache = new VerifiedIdentities(2, 2);
    cache.set('stale', user('a'), NOW + 10, NOW);
    cache.set('fresh', user('b'), VALID, NOW);
    cache.set('new', user('c'), VALID, NOW + 10);
    expect(cache.has('fresh', NOW + 10)).toBe(true);
    expect(cache.has('new', NOW + 10)).toBe(true);
    expect(cache.size).toBe(2);
  });

  it('drops entries whose proof ends at this very moment before evicting a fresh one, and only when full', () => {
    const cache = new VerifiedIdentities(3, 3);
    cache.set('fresh-1', user('a'), VALID, NOW);
    cache.set('fresh-2', user('a'), VALID, NOW);
    cache.set('ends-now', user('b'), NOW + 10, NOW);
    cache.set('new', user('c'), VALID, NOW + 10);
    for (const key of ['fresh-1', 'fresh-2', 'new']) expect(cache.has(key, NOW + 10)).toBe(true);
    expect(cache.size).toBe(3);
    // Not full: a stale entry waits to be asked for or for the cache to fill.
    const roomy = new VerifiedIdentities(3, 3);
    roomy.set('stale', user('a'), NOW + 10, NOW);
    roomy.set('next', user('b'), VALID, NOW + 10);
    expect(roomy.size).toBe(2);
  });
});
