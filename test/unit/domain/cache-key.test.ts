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

  it('is the key of before tokenParams existed for a client without them (a deploy keeps the cache)', () => {
    // What main computed for this request before tokenParams existed: v1:sha256('["https://a/t","c",["a","b"]]').
    const computed = cacheKeyFor('https://a/t', 'c', ['b', 'a']);
    expect(computed).toBe('v1:ad56a1b270bcf1aec4faa4380be461e5f7e6e8d38c4640f4bcec300985669631');
    expect(cacheKeyFor('https://a/t', 'c', ['a', 'b'], {})).toBe(computed);
    expect(cacheKeyFor('https://a/t', 'c', ['a', 'b'], { resource: [] })).toBe(computed);
  });

  it("writes a resource-only client's key with an explicit null audience (keys stay stable across releases)", () => {
    // v1:sha256('["https://a/t","c",["a"],{"audience":null,"resource":["https://api"]}]'), as issue 20 shipped it.
    expect(cacheKeyFor('https://a/t', 'c', ['a'], { resource: ['https://api'] })).toBe(
      'v1:250561a39e6b2eca7addcb7460d688be2108f7efe617b5c4d79e23ea4a0f718d',
    );
  });

  it('differs by audience and resource, but not by resource order or repeats', () => {
    const plain = cacheKeyFor('https://a/t', 'c', ['a']);
    const keys = new Set([
      plain,
      cacheKeyFor('https://a/t', 'c', ['a'], { audience: 'https://api' }),
      cacheKeyFor('https://a/t', 'c', ['a'], { resource: ['https://api'] }),
      cacheKeyFor('https://a/t', 'c', ['a'], { audience: 'https://api', resource: ['https://api'] }),
      cacheKeyFor('https://a/t', 'c', ['a'], { resource: ['https://x', 'https://y'] }),
    ]);
    expect(keys.size).toBe(5);
    expect(cacheKeyFor('https://a/t', 'c', ['a'], { resource: ['https://y', 'https://x', 'https://y'] })).toBe(
      cacheKeyFor('https://a/t', 'c', ['a'], { resource: ['https://x', 'https://y'] }),
    );
  });
});
