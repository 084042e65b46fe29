import { describe, expect, it } from 'vitest';
import {
  budgetRetryAfterSec,
  FORCE_REFRESH_BUDGET,
  forceBudgetSpent,
  MemoryForceBudget,
} from '../../../../functions/lib/cache/lease/force-budget';
import { FORCE_REFRESH_LIMITED } from '../../../../functions/lib/cache/lease/forced-refresh';
import { InMemoryLease } from '../../../../functions/lib/cache/lease/in-memory-lease';
import { CLOCK_SKEW_MS, latestForcedFetchMs } from '../../../../functions/lib/cache/lease/lease-rules';
import { MemoryTokenCache } from '../../../../functions/lib/cache/memory-cache';
import { forceBudgetUnspent } from '../../../../functions/lib/cache/table/conditions';
import { type CachedToken, lifetimeOf } from '../../../../functions/lib/domain/cached-token';
import type { KeyedRequest } from '../../../../functions/lib/domain/token-request';
import type { LeaseAttempt, LeaseRequest, TokenTable } from '../../../../functions/lib/ports';
import { UnavailableError } from '../../../../functions/lib/shared/errors';
import { sha256Hex } from '../../../../functions/lib/shared/hash';
import { type FakeTable, INTERVAL_MS, world } from '../../../support/fakes/lease-world';

/**
 * A caller's forced-refresh budget (force-budget.ts): one forced fetch per interval per caller and client, across
 * every scope set, through the one lease loop against the in-memory table (whose budget write evaluates the same named
 * condition as DynamoDB's), with a fake clock.
 */
const CALLER = 'budget-v1:billing';
const OTHER_CALLER = 'budget-v1:reporting';
const keys = Array.from({ length: 7 }, (_, i) => `v1:subset-${i}`);

type World = ReturnType<typeof world>;
/** Every key holds a servable token (issued 5 s ago) the caller then reports rejected. */
const seedAll = (w: World): CachedToken[] =>
  keys.map((key, i) => {
    const token = { accessToken: `current-${i}`, scopes: ['a'], ...lifetimeOf(w.nowMs() - 5_000, 3600) };
    w.table.items.set(key, { token });
    return token;
  });
/** A forced refresh of `key` by the caller owning `budget`, reporting `rejected` (or nothing) rejected. */
const forcedOf = (w: World, key: string, budget: string, rejected?: CachedToken): KeyedRequest => ({
  ...w.forced(rejected),
  cacheKey: key,
  forceBudgetKey: budget,
});
const errorOf = async (pending: Promise<unknown>): Promise<UnavailableError> => {
  const err = await pending.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UnavailableError);
  return err as UnavailableError;
};

describe('the budget decisions', () => {
  it('counts a budget spent within the interval, and no time a broker could not have written', () => {
    const now = Date.parse('2026-11-29T06:00:00Z');
    const unspent = (spentAtEpochMs: number | undefined) =>
      forceBudgetUnspent(now, INTERVAL_MS).holds({ budgetSpentAtEpochMs: spentAtEpochMs });
    expect(unspent(undefined)).toBe(true);
    expect(unspent(now - INTERVAL_MS)).toBe(true);
    expect(unspent(now - INTERVAL_MS + 1)).toBe(false);
    expect(unspent(latestForcedFetchMs(now))).toBe(false);
    // A table writer's time far ahead would block the caller for ever: it is not one a broker writes, so it is none.
    expect(unspent(latestForcedFetchMs(now) + 1)).toBe(true);
    expect(unspent(Number.MAX_SAFE_INTEGER)).toBe(true);
    expect(budgetRetryAfterSec(now - 17_600, now, INTERVAL_MS)).toBe(13);
    expect(budgetRetryAfterSec(now + CLOCK_SKEW_MS, now, INTERVAL_MS)).toBe(31);
    expect(budgetRetryAfterSec(undefined, now, INTERVAL_MS)).toBe(1);
  });

  it('answers a spent budget as temporarily_unavailable 503 with retryAfterSeconds, reason force_refresh_budget', () => {
    const err = forceBudgetSpent(13, 30);
    expect(err.reason).toBe(FORCE_REFRESH_BUDGET);
    expect(err.toOAuth()).toEqual({
      error: 'temporarily_unavailable',
      error_description:
        'your forced refreshes with this client fetch at most once every 30 s, whatever the scopes, and one already fetched within that time; retry in 13 s',
      status: 503,
      retryAfterSeconds: 13,
    });
  });

  it("keeps a container's budgets in memory while the table is down, each for one interval", () => {
    const budgets = new MemoryForceBudget(INTERVAL_MS);
    const now = Date.parse('2026-11-29T06:00:00Z');
    expect(budgets.claim(CALLER, now)).toEqual({ claimed: true });
    expect(budgets.claim(CALLER, now + 12_400)).toEqual({ claimed: false, retryAfterSec: 18 });
    expect(budgets.claim(OTHER_CALLER, now + 12_400)).toEqual({ claimed: true });
    expect(budgets.claim(CALLER, now + INTERVAL_MS)).toEqual({ claimed: true });
  });
});

describe('forced refreshes of many scope sets by one caller, across containers', () => {
  it('fetch once per interval for the caller and client, and refuse the other scope sets until it ends', async () => {
    const w = world();
    const current = seedAll(w);
    const fleet = [w.container(), w.container(), w.container()];
    const first = await fleet[0]!.obtain(forcedOf(w, keys[0]!, CALLER, current[0]));
    expect(first.source).toBe('endpoint');
    for (let i = 1; i < keys.length; i++) {
      const err = await errorOf(fleet[i % 3]!.obtain(forcedOf(w, keys[i]!, CALLER, current[i])));
      expect(err.reason).toBe(FORCE_REFRESH_BUDGET);
      expect(err.toOAuth()).toMatchObject({
        status: 503,
        retryAfterSeconds: 30,
        error_description: expect.stringContaining('at most once every 30 s'),
      });
    }
    expect(w.fetchedAtMs).toHaveLength(1);
    // A caller over budget gave each key's lease and forced fetch back: the keys are as they were.
    for (const key of keys.slice(1)) {
      expect(w.table.items.get(key)?.forcedFetchAtEpochMs).toBeUndefined();
      expect(w.table.items.get(key)?.lease).toBeUndefined();
    }
    // Another caller has a budget of its own.
    expect((await fleet[1]!.obtain(forcedOf(w, keys[1]!, OTHER_CALLER, current[1]))).source).toBe('endpoint');
    // Once the interval has passed, the caller fetches once more, then is refused again.
    w.advance(INTERVAL_MS);
    expect((await fleet[2]!.obtain(forcedOf(w, keys[2]!, CALLER, current[2]))).source).toBe('endpoint');
    expect((await errorOf(fleet[0]!.obtain(forcedOf(w, keys[3]!, CALLER, current[3])))).reason).toBe(
      FORCE_REFRESH_BUDGET,
    );
    expect(w.fetchedAtMs).toHaveLength(3);
  });

  it('keeps the per-key bound: a key fetched within the interval refuses its current token, whatever the budget', async () => {
    const w = world();
    const current = seedAll(w);
    const c = w.container();
    const second = (await c.obtain(forcedOf(w, keys[0]!, CALLER, current[0]))).token;
    const err = await errorOf(c.obtain(forcedOf(w, keys[0]!, OTHER_CALLER, second)));
    expect(err.reason).toBe(FORCE_REFRESH_LIMITED);
    expect(w.table.budgetClaims).toBe(1);
  });

  it('spends nothing on a forced refresh answered without an upstream request', async () => {
    const w = world();
    const current = seedAll(w);
    const c = w.container();
    // Another token than the one reported rejected: served as it is.
    const other = await c.obtain(forcedOf(w, keys[0]!, CALLER, { ...current[0]!, accessToken: 'an older token' }));
    expect(other.token).toEqual(current[0]);
    // Inside the key's interval without a fingerprint: the token fetched in it is served.
    await c.obtain(forcedOf(w, keys[1]!, OTHER_CALLER, current[1]));
    expect((await c.obtain(forcedOf(w, keys[1]!, CALLER))).source).toBe('table');
    // No servable token at all: a plain miss, which any request would fetch.
    w.table.items.delete(keys[2]!);
    expect((await c.obtain(forcedOf(w, keys[2]!, CALLER, current[2]))).source).toBe('endpoint');
    expect(w.table.budgets.has(CALLER)).toBe(false);
    // So the caller's budget is still whole.
    expect((await c.obtain(forcedOf(w, keys[3]!, CALLER, current[3]))).source).toBe('endpoint');
  });

  it('spends nothing when the double check finds a token another container just wrote', async () => {
    const w = world();
    const current = seedAll(w);
    const newer = { accessToken: 'written-meanwhile', scopes: ['a'], ...lifetimeOf(w.nowMs(), 3600) };
    /** Between the caller's read and its take, another container writes a new token for the key. */
    class RacedTable implements TokenTable {
      constructor(private readonly table: FakeTable) {}
      read: TokenTable['read'] = (key) => this.table.read(key);
      tryAcquireLease = async (key: string, owner: string, request: LeaseRequest): Promise<LeaseAttempt> => {
        if (key === keys[0]) await this.table.writeToken(key, newer, 'limitrail');
        return this.table.tryAcquireLease(key, owner, request);
      };
      writeToken: TokenTable['writeToken'] = (key, token, client, owner) =>
        this.table.writeToken(key, token, client, owner);
      renewLease: TokenTable['renewLease'] = (...args) => this.table.renewLease(...args);
      releaseLease: TokenTable['releaseLease'] = (key, owner, options) => this.table.releaseLease(key, owner, options);
      claimForceBudget: TokenTable['claimForceBudget'] = (key, request) => this.table.claimForceBudget(key, request);
    }
    const c = w.container(undefined, new RacedTable(w.table));
    expect((await c.obtain(forcedOf(w, keys[0]!, CALLER, current[0]))).token).toEqual(newer);
    expect(w.fetchedAtMs).toHaveLength(0);
    expect(w.table.budgetClaims).toBe(0);
    expect((await c.obtain(forcedOf(w, keys[1]!, CALLER, current[1]))).source).toBe('endpoint');
  });

  it('make one fetch for a herd of one caller forcing one key at once, every request served its token', async () => {
    const w = world();
    const current = seedAll(w);
    const fleet = [w.container(), w.container(), w.container()];
    const outcomes = await Promise.all(
      fleet.flatMap((c) => [
        c.obtain(forcedOf(w, keys[0]!, CALLER, current[0])),
        c.obtain(forcedOf(w, keys[0]!, CALLER)),
      ]),
    );
    expect(new Set(outcomes.map((o) => o.token.accessToken))).toEqual(new Set(['token-1']));
    expect(w.fetchedAtMs).toHaveLength(1);
  });

  it("leave a key's forced fetch to other callers when refused over budget", async () => {
    const w = world();
    const current = seedAll(w);
    const c = w.container();
    await c.obtain(forcedOf(w, keys[0]!, CALLER, current[0]));
    expect((await errorOf(c.obtain(forcedOf(w, keys[1]!, CALLER, current[1])))).reason).toBe(FORCE_REFRESH_BUDGET);
    // The refused attempt fetched nothing, so the key's interval is unspent: another caller's report fetches.
    expect((await c.obtain(forcedOf(w, keys[1]!, OTHER_CALLER, current[1]))).source).toBe('endpoint');
  });

  it("bounds a caller's forced refreshes in the container's memory while the table is down", async () => {
    const w = world();
    const lease = new InMemoryLease({
      fetcher: { fetch: async () => ({ accessToken: 'fetched', scopes: ['a'], ...lifetimeOf(w.nowMs(), 3600) }) },
      memory: new MemoryTokenCache(10),
      clock: { nowMs: w.nowMs },
      forceRefreshIntervalMs: INTERVAL_MS,
    });
    // Misses while the table is down: each key's token is fetched into the container's memory.
    for (const key of keys.slice(0, 2)) await lease.obtain(w.request({ cacheKey: key }));
    const rejecting = (key: string) => ({
      ...w.request({ cacheKey: key }),
      forceRefresh: true,
      rejectedTokenSha256: sha256Hex('fetched'),
      forceBudgetKey: CALLER,
    });
    w.advance(5_000);
    expect((await lease.obtain(rejecting(keys[0]!))).source).toBe('endpoint');
    const err = await errorOf(lease.obtain(rejecting(keys[1]!)));
    expect(err.reason).toBe(FORCE_REFRESH_BUDGET);
    expect(err.toOAuth()).toMatchObject({ status: 503, retryAfterSeconds: 30 });
  });
});
