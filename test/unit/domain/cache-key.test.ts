import { describe, expect, it } from 'vitest';
import { cacheKeyFor } from '../../../functions/lib/domain/cache-key';

describe('cache key', () => {
  it('does not depend on scope order or duplicates', () => {
    expect(cacheKeyFor('https://a/t', 'c', ['b', 'a', 'a'])).toBe(cacheKeyFor('https://a/t', 'c', ['a', 'b']));
  });

  it('differs by token URL, client id and scope set', () => {
    const keys = new Set([
      cacheKeyFor('https://a/t', 'c', ['a']),
      cacheKeyFor('https://b/t', 'c', ['a']),
      cacheKeyFor('https://a/t', 'd', ['a']),
      cacheKeyFor('https://a/t', 'c', ['a', 'b']),
      cacheKeyFor('https://a/t', 'c', ['a b']),
    ]);
    expect(keys.size).toBe(5);
  });
});
