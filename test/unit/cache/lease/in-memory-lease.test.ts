import { describe, expect, it } from 'vitest';
import { FORCE_REFRESH_BUDGET } from '../../../../functions/lib/cache/lease/force-budget';
import { FORCE_REFRESH_LIMITED } from '../../../../functions/lib/cache/lease/forced-refresh';
import { InMemoryLease } from '../../../../functions/lib/cache/lease/in-memory-lease';
import { MemoryTokenCache } from '../../../../functions/lib/cache/memory-cache';
import { type CachedToken, lifetimeOf } from '../../../../functions/lib/domain/cached-token';
import type { KeyedRequest } from '../../../../functions/lib/domain/token-request';
import { INTERVAL_MS, world } from '../../../support/fakes/lease-world';
import { unavailable } from '../../../support/fakes/observed';

/**
 * The lease protocol while the table is down (in-memory-lease.ts): this container's memory bounds forced refreshes,
 * per key (one forced fetch per interval) and per caller (its budget), with a fake clock.
 */
const CALLER = 'budget-v1:billing';
const [K1, K2] = ['v1:key-1', 'v1:key-2'];

/** An endpoint that issues `token-1`, `token-2`... each living `lifetimeSec` from now; `fetched`: when. */
const setup = (lifetimeSec = 3600) => {
  const w = world();
  const fetched: number[] = [];
  const lease = new InMemoryLease({
    fetcher: {
      fetch: async () => {
        fetched.push(w.nowMs());
        return { accessToken: `token-${fetched.length}`, scopes: ['a'], ...lifetimeOf(w.nowMs(), lifetimeSec) };
      },
    },
    memory: new MemoryTokenCache(10),
    clock: { nowMs: w.nowMs },
    forceRefreshIntervalMs: INTERVAL_MS,
  });
  /** A forced refresh of `key` reporting `rejected` (or nothing) rejected, by a caller with a budget if given. */
  const forced = (key: string, rejected?: CachedToken, budget?: string): KeyedRequest => ({
    ...w.forced(rejected),
    cacheKey: key,
    ...(budget === undefined ? {} : { forceBudgetKey: budget }),
  });
  const miss = async (key: string) => (await lease.obtain(w.request({ cacheKey: key }))).token;
  return { w, lease, fetched, forced, miss };
};

describe('forced refreshes while the table is down', () => {
  it("fetch once per interval per key: the current token reported again is refused with the interval's seconds", async () => {
    const { w, lease, fetched, forced, miss } = setup();
    const first = await miss(K1);
    const second = await lease.obtain(forced(K1, first));
    expect(second.source).toBe('endpoint');
    w.advance(17_600);
    const err = await unavailable(lease.obtain(forced(K1, second.token)));
    expect(err.reason).toBe(FORCE_REFRESH_LIMITED);
    expect(err.toOAuth()).toEqual({
      error: 'temporarily_unavailable',
      error_description:
        'the current token is the one reported rejected, and forced refreshes of this scope set fetch at most once every 30 s; retry in 13 s',
      status: 503,
      retryAfterSeconds: 13,
    });
    w.advance(12_400);
    expect((await lease.obtain(forced(K1, second.token))).source).toBe('endpoint');
    expect(fetched).toHaveLength(3);
  });

  it("keep each key's interval: a forced fetch of another key does not free this one", async () => {
    const { w, lease, forced, miss } = setup();
    const [t1, t2] = [await miss(K1), await miss(K2)];
    const current = (await lease.obtain(forced(K1, t1))).token;
    w.advance(1_000);
    await lease.obtain(forced(K2, t2));
    w.advance(1_000);
    expect((await unavailable(lease.obtain(forced(K1, current)))).reason).toBe(FORCE_REFRESH_LIMITED);
  });

  it("answer a caller over its budget with the interval's seconds", async () => {
    const { w, lease, forced, miss } = setup();
    const [t1, t2] = [await miss(K1), await miss(K2)];
    await lease.obtain(forced(K1, t1, CALLER));
    w.advance(5_000);
    const err = await unavailable(lease.obtain(forced(K2, t2, CALLER)));
    expect(err.reason).toBe(FORCE_REFRESH_BUDGET);
    expect(err.toOAuth()).toMatchObject({
      retryAfterSeconds: 25,
      error_description: expect.stringContaining('at most once every 30 s'),
    });
  });

  it("treat a key with no servable token as a plain miss: no budget spent, the key's interval not extended", async () => {
    // Tokens live 36 s: 28 s after a fetch one has 8 s left, short of the quarter of its life a request needs at most.
    const { w, lease, forced, miss } = setup(36);
    const second = (await lease.obtain(forced(K1, await miss(K1)))).token; // the key's forced fetch of this interval
    w.advance(28_000);
    const third = await lease.obtain(forced(K1, second, CALLER)); // inside the interval, nothing servable: a plain miss
    expect(third.source).toBe('endpoint');
    // The caller's budget is whole: its forced refresh of another key's servable token fetches.
    expect((await lease.obtain(forced(K2, await miss(K2), CALLER))).source).toBe('endpoint');
    // The key's interval still runs from its forced fetch: once it ends, a report of the current token fetches.
    w.advance(3_000);
    expect((await lease.obtain(forced(K1, third.token))).source).toBe('endpoint');
  });
});

describe('a miss while the table is down', () => {
  it('fetches directly, keeps the token in memory, and says it went around the table', async () => {
    const { lease, w, fetched } = setup();
    const outcome = await lease.obtain(w.request());
    expect(outcome).toMatchObject({ source: 'endpoint', aroundTable: true });
    expect(await lease.refreshIfDue(w.request())).toBe('refreshed');
    expect(fetched).toHaveLength(2);
  });
});
