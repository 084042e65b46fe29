import { describe, expect, it } from 'vitest';
import { REFRESH_RETRY_AFTER_MS } from '../../../../functions/lib/cache/lease/decisions';
import { FORCE_REFRESH_BUDGET } from '../../../../functions/lib/cache/lease/force-budget';
import { CLOCK_SKEW_MS, TABLE_CALL_MAX_MS } from '../../../../functions/lib/cache/lease/lease-rules';
import { type CachedToken, lifetimeOf } from '../../../../functions/lib/domain/cached-token';
import type { LeaseAttempt, LeaseRequest, StoredEntry, TokenTable } from '../../../../functions/lib/ports';
import { UnavailableError } from '../../../../functions/lib/shared/errors';
import { type FakeTable, INTERVAL_MS, KEY, LEASE_MS, world } from '../../../support/fakes/lease-world';
import { observed, unavailable } from '../../../support/fakes/observed';

/**
 * A table that does not show the lease when read, while its conditional writes honour it: a reading that disagrees
 * with the conditions (as DynamoTokenTable's once did for a lease time without an owner). Takes beyond a thousand fail:
 * a loop that retries at once never moves the fake clock.
 */
class BlindTable implements TokenTable {
  takes = 0;
  constructor(private readonly table: FakeTable) {}
  read = async (key: string) => hideLease(await this.table.read(key));
  tryAcquireLease = async (key: string, owner: string, request: LeaseRequest): Promise<LeaseAttempt> => {
    this.takes += 1;
    if (this.takes > 1_000) throw new Error('a lost take retried in a loop');
    const attempt = await this.table.tryAcquireLease(key, owner, request);
    return attempt.acquired ? attempt : { acquired: false, entry: hideLease(attempt.entry) };
  };
  writeToken: TokenTable['writeToken'] = (key, token, client, owner) =>
    this.table.writeToken(key, token, client, owner);
  renewLease: TokenTable['renewLease'] = (key, owner, until) => this.table.renewLease(key, owner, until);
  releaseLease: TokenTable['releaseLease'] = (key, owner, options) => this.table.releaseLease(key, owner, options);
  claimForceBudget: TokenTable['claimForceBudget'] = (key, request) => this.table.claimForceBudget(key, request);
}
const hideLease = ({ lease: _hidden, ...rest }: StoredEntry): StoredEntry => rest;

/**
 * The lease protocol (refresh-lease.ts) against an in-memory table whose conditional writes are token-store.ts's
 * DynamoDB conditions written out (test/support/fakes/lease-world.ts), with a fake clock that sleeping moves: waiting
 * times are measured exactly, not timed.
 */
describe('a dead or misbehaving lease holder', () => {
  /** The latest end a holder can have written, past a reading: its lease, the clock skew, and a table call meanwhile. */
  const REACH_MS = LEASE_MS + CLOCK_SKEW_MS + TABLE_CALL_MAX_MS;
  const written = [
    -1,
    0,
    1,
    LEASE_MS / 2,
    LEASE_MS,
    LEASE_MS + CLOCK_SKEW_MS,
    REACH_MS,
    REACH_MS + 1,
    3_600_000,
    10 * 365 * 86_400_000,
  ];

  it.each(written)(
    'delays a miss at most REFRESH_LEASE_MS plus the clock skew and a table call when its lease ends %i ms after the miss sees it',
    async (offsetMs) => {
      const w = world();
      w.table.items.set(KEY, { lease: { owner: 'a-holder-that-never-writes', untilEpochMs: w.nowMs() + offsetMs } });
      const seenAtMs = w.nowMs();
      const outcome = await w.container().obtain(w.request());
      expect(outcome.source).toBe('endpoint');
      expect(w.fetchedAtMs).toHaveLength(1);
      const delayMs = w.fetchedAtMs[0]! - seenAtMs;
      expect(delayMs).toBeLessThanOrEqual(REACH_MS);
      // A lease no holder could have set (pinned) is taken over at once.
      if (offsetMs > REACH_MS || offsetMs <= 0) expect(delayMs).toBe(0);
    },
  );

  it.each([1, LEASE_MS / 2, REACH_MS])(
    'counts a lease without an owner ending %i ms after the miss sees it as held, and waits it out',
    async (offsetMs) => {
      const w = world();
      w.table.items.set(KEY, { lease: { untilEpochMs: w.nowMs() + offsetMs } });
      const seenAtMs = w.nowMs();
      expect((await w.container().obtain(w.request())).source).toBe('endpoint');
      expect(w.fetchedAtMs).toEqual([seenAtMs + offsetMs]);
      expect(w.table.acquisitions).toBe(2); // the miss's first take (lost: it shows the lease), then the one at its end
    },
  );

  it('refuses a take whose clock reading predates a lease written meanwhile by a holder the skew ahead (no pinned look)', async () => {
    const w = world();
    const readAtMs = w.nowMs();
    // While the take is in flight (50 ms), another container whose clock runs the skew ahead takes the lease.
    w.table.items.set(KEY, {
      lease: { owner: 'a-holder-ahead', untilEpochMs: readAtMs + 50 + CLOCK_SKEW_MS + LEASE_MS },
    });
    w.advance(50);
    const attempt = await w.table.tryAcquireLease(KEY, 'a-late-taker', { nowMs: readAtMs, leaseDurationMs: LEASE_MS });
    expect(attempt.acquired).toBe(false);
    expect(w.table.items.get(KEY)?.lease?.owner).toBe('a-holder-ahead');
  });

  it('never retries a lost take at once when the item reads as free (a reading the condition disagrees with)', async () => {
    const w = world();
    const endsAtMs = w.nowMs() + LEASE_MS / 2;
    w.table.items.set(KEY, { lease: { owner: 'unseen', untilEpochMs: endsAtMs } });
    const blind = new BlindTable(w.table);
    const outcome = await w.container(undefined, blind).obtain(w.request());
    expect(outcome.source).toBe('endpoint');
    // Lost takes back off as polls do (25 ms doubling to 400 ms, full jitter; the fake draws 0.5): 200 ms apart at
    // most, never in a loop, and the token is fetched within one such step after the lease ends.
    expect(w.fetchedAtMs[0]! - endsAtMs).toBeGreaterThanOrEqual(0);
    expect(w.fetchedAtMs[0]! - endsAtMs).toBeLessThanOrEqual(200);
    expect(blind.takes).toBeLessThanOrEqual(5 + Math.ceil(LEASE_MS / 2 / 200));
  });

  it('keeps refresh ahead quiet for at most REFRESH_LEASE_MS after seeing the lease held, whatever the lease says', async () => {
    const w = world();
    const due = w.seed(3000);
    w.table.items.set(KEY, {
      token: due,
      lease: { owner: 'another-container', untilEpochMs: w.nowMs() + LEASE_MS + CLOCK_SKEW_MS },
    });
    const lease = w.container();
    const current = { token: due, source: 'memory' as const };
    expect(await lease.refreshAhead(w.request(), current)).toBe(current);
    expect(w.table.acquisitions).toBe(1);
    w.advance(LEASE_MS - 1);
    await lease.refreshAhead(w.request(), current);
    expect(w.table.acquisitions).toBe(1);
    w.advance(1);
    await lease.refreshAhead(w.request(), current);
    expect(w.table.acquisitions).toBe(2);
  });
});

describe('forced refreshes across containers', () => {
  it('fetch at most once per interval per key, however many containers report the current token rejected', async () => {
    const w = world();
    const first = w.seed(5);
    const [a, b] = [w.container(), w.container()];
    const second = (await a.obtain(w.forced(first))).token;
    expect(second.accessToken).toBe('token-1');
    for (const c of [a, b, a, b, b]) {
      expect(await w.refusal(c.obtain(w.forced(second)))).toMatchObject({ status: 503, retryAfterSeconds: 30 });
    }
    // Another fingerprint than the current token's gets the current token.
    expect((await b.obtain(w.forced(first))).token).toEqual(second);
    w.advance(INTERVAL_MS - 12_500);
    expect(await w.refusal(b.obtain(w.forced(second)))).toMatchObject({ retryAfterSeconds: 13 });
    expect(w.fetchedAtMs).toHaveLength(1);
    w.advance(12_500);
    expect((await b.obtain(w.forced(second))).source).toBe('endpoint');
    expect(w.fetchedAtMs).toHaveLength(2);
  });

  it('coalesce concurrent forced refreshes from several containers into one fetch', async () => {
    const w = world();
    const first = w.seed(120);
    const fleet = [w.container(), w.container(), w.container()];
    const outcomes = await Promise.all(fleet.flatMap((c) => [c.obtain(w.forced(first)), c.obtain(w.forced())]));
    expect(new Set(outcomes.map((o) => o.token.accessToken))).toEqual(new Set(['token-1']));
    expect(w.fetchedAtMs).toHaveLength(1);
  });

  it('fetch at once for the first one after a quiet interval, even for a seconds-old token; the rest get its token', async () => {
    const w = world();
    const fresh = w.seed(2);
    const [a, b] = [w.container(), w.container()];
    const forced = await a.obtain(w.forced());
    expect(forced.source).toBe('endpoint');
    expect(forced.token.accessToken).not.toBe(fresh.accessToken);
    expect((await b.obtain(w.forced())).token).toEqual(forced.token);
    expect(w.fetchedAtMs).toHaveLength(1);
  });
});

describe('a forced refresh in a spent interval, with no servable token', () => {
  it('is a plain miss: a token another container writes between its read and its take answers it, no fetch', async () => {
    const w = world();
    w.table.items.set(KEY, { forcedFetchAtEpochMs: w.nowMs() - 1_000 }); // this interval's forced fetch is spent
    const written = { accessToken: 'written-meanwhile', scopes: ['a'], ...lifetimeOf(w.nowMs(), 3600) };
    const racing: TokenTable = {
      read: (key) => w.table.read(key),
      tryAcquireLease: async (key, owner, request) => {
        await w.table.writeToken(key, written, 'limitrail'); // another container's miss completes first
        return w.table.tryAcquireLease(key, owner, request);
      },
      writeToken: (key, token, client, owner) => w.table.writeToken(key, token, client, owner),
      renewLease: (key, owner, until) => w.table.renewLease(key, owner, until),
      releaseLease: (key, owner) => w.table.releaseLease(key, owner),
      claimForceBudget: (key, request) => w.table.claimForceBudget(key, request),
    };
    const outcome = await w.container(undefined, racing).obtain(w.forced());
    expect(outcome).toEqual({ token: written, source: 'table' });
    expect(w.fetchedAtMs).toHaveLength(0);
    expect(w.table.items.get(KEY)?.lease).toBeUndefined();
  });
});

describe('refresh ahead for a forced refresh', () => {
  it('never answers with the token the caller reported rejected, though the table holds it and it is newer', async () => {
    const w = world();
    const due = w.seed(3000); // the container's token, past its refresh point
    const newer = { accessToken: 'token-newer', scopes: ['a'], ...lifetimeOf(w.nowMs() - 5_000, 3600) };
    w.table.items.set(KEY, { token: newer }); // another container refreshed it; the caller reports it rejected
    const current = { token: due, source: 'memory' as const };
    const outcome = await w.container().refreshAhead(w.forced(newer), current);
    expect(outcome.token.accessToken).toBe(due.accessToken);
    expect(w.fetchedAtMs).toHaveLength(0);
    expect(w.table.items.get(KEY)?.lease).toBeUndefined();
  });
});

describe('a refresh ahead that fails', () => {
  /** An endpoint that fails after `takesMs`, as one that times out. */
  const failingAfter = (w: ReturnType<typeof world>, takesMs: number) => ({
    fetch: async () => {
      w.advance(takesMs);
      throw new UnavailableError('the token endpoint timed out', 'upstream_timeout');
    },
  });

  it('serves the current token when it still answers the request', async () => {
    const w = world();
    const current = { token: w.seed(3600 - 90), source: 'memory' as const }; // 90 s left, the request asks 60
    expect(await w.container(failingAfter(w, 20_000)).refreshAhead(w.request(), current)).toBe(current);
  });

  it('throws when the refresh outlasted the minTtlSeconds the current token answered (never serves it short)', async () => {
    const w = world();
    const current = { token: w.seed(3600 - 70), source: 'memory' as const }; // 70 s left, 50 s after the refresh
    await expect(w.container(failingAfter(w, 20_000)).refreshAhead(w.request(), current)).rejects.toMatchObject({
      reason: 'upstream_timeout',
    });
    expect(w.table.items.get(KEY)?.lease).toBeUndefined();
  });
});

/** Another view of a table: every call goes through to it, except those given. */
const viewOf = (table: TokenTable, over: Partial<TokenTable> = {}): TokenTable => ({
  read: (key, consistent) => table.read(key, consistent),
  tryAcquireLease: (key, owner, request) => table.tryAcquireLease(key, owner, request),
  writeToken: (...args) => table.writeToken(...args),
  renewLease: (...args) => table.renewLease(...args),
  releaseLease: (...args) => table.releaseLease(...args),
  claimForceBudget: (...args) => table.claimForceBudget(...args),
  ...over,
});

describe('a request that runs out of time', () => {
  it('says another container was fetching when the holder did not deliver before the deadline (lease_wait_timeout)', async () => {
    const w = world();
    w.table.items.set(KEY, { lease: { owner: 'a-slow-holder', untilEpochMs: w.nowMs() + LEASE_MS } });
    const err = await unavailable(w.container().obtain(w.request({ deadlineMs: w.nowMs() + 1_000 })));
    expect(err.reason).toBe('lease_wait_timeout');
    expect(err.toOAuth()).toEqual({
      error: 'temporarily_unavailable',
      error_description:
        'another container is fetching this token and it did not arrive before this invocation ran out of time',
      status: 503,
    });
    expect(w.fetchedAtMs).toHaveLength(0);
  });

  it('says no time was left when the deadline passed before it could wait or take the lease', async () => {
    const w = world();
    const err = await unavailable(w.container().obtain(w.request({ deadlineMs: w.nowMs() })));
    expect(err.reason).toBe('lease_wait_timeout');
    expect(err.toOAuth().error_description).toBe(
      'no time left in this invocation to wait for or take the refresh lease',
    );
    expect(w.table.acquisitions).toBe(0);
  });
});

describe('waiting for a lease holder', () => {
  it('counts LeaseWaits once per waiting request, however many polls it makes; a request that does not wait counts none', async () => {
    const w = world();
    w.table.items.set(KEY, { lease: { owner: 'a-dead-holder', untilEpochMs: w.nowMs() + LEASE_MS / 2 } });
    const waiting = observed();
    const reads = { n: 0 };
    const counted = viewOf(w.table, {
      read: (key) => {
        reads.n += 1;
        return w.table.read(key);
      },
    });
    await w.container(undefined, counted).obtain(w.request({ metrics: waiting.metrics }));
    expect(reads.n).toBeGreaterThan(2); // it polled several times
    expect(waiting.counts.get('LeaseWaits')).toBe(1);
    const served = observed();
    await w.container().obtain(w.request({ metrics: served.metrics }));
    expect(served.counts.get('LeaseWaits')).toBeUndefined();
  });

  it('reads the item consistently on every poll and every forced or prewarm look; only refresh ahead looks first with an eventually consistent read', async () => {
    const w = world();
    const reads: (boolean | undefined)[] = [];
    const recorded = viewOf(w.table, {
      read: (key, consistent) => {
        reads.push(consistent);
        return w.table.read(key);
      },
    });
    const c = w.container(undefined, recorded);
    const due = w.seed(3000);
    w.table.items.set(KEY, { token: due, lease: { owner: 'other', untilEpochMs: w.nowMs() + 1_000 } });
    await c.refreshAhead(w.request(), { token: due, source: 'memory' });
    expect(reads).toEqual([false]);
    reads.length = 0;
    w.table.items.set(KEY, { lease: { owner: 'a-dead-holder', untilEpochMs: w.nowMs() + 1_000 } });
    await c.obtain(w.request()); // a miss: the broker has just read the item; the polls read it again
    expect(reads.length).toBeGreaterThan(0);
    expect(reads.every((consistent) => consistent === true)).toBe(true);
    reads.length = 0;
    await c.obtain(w.forced());
    await c.refreshIfDue(w.request());
    expect(reads).toEqual([true, true]);
  });
});

describe('a forced refresh answered from the table', () => {
  it("claims nothing when the table's token is not the one reported: a report of that token then fetches at once", async () => {
    const w = world();
    const current = w.seed(5);
    const c = w.container();
    expect(await c.obtain(w.forced({ ...current, accessToken: 'an-older-token' }))).toEqual({
      token: current,
      source: 'table',
    });
    expect(w.table.items.get(KEY)?.forcedFetchAtEpochMs).toBeUndefined();
    expect((await c.obtain(w.forced(current))).source).toBe('endpoint');
  });
});

describe("a holder over its budget that did not claim the key's forced fetch", () => {
  it('leaves the forced fetch another container recorded on the key as it was (the per-key bound stays)', async () => {
    const w = world();
    const spentAtMs = w.nowMs() - 1_000; // this interval's forced fetch of the key, and the caller's budget, are spent
    w.table.items.set(KEY, { forcedFetchAtEpochMs: spentAtMs });
    w.table.budgets.set('budget-v1:billing', { spentAtEpochMs: spentAtMs });
    const reported: CachedToken = { accessToken: 'written-meanwhile', scopes: ['a'], ...lifetimeOf(w.nowMs(), 3600) };
    // Between the request's read (no token: a plain miss, no claim) and its take, another container writes a token.
    const racing = viewOf(w.table, {
      tryAcquireLease: async (key, owner, request) => {
        await w.table.writeToken(key, reported, 'limitrail');
        return w.table.tryAcquireLease(key, owner, request);
      },
    });
    const err = await unavailable(
      w.container(undefined, racing).obtain({ ...w.forced(reported), forceBudgetKey: 'budget-v1:billing' }),
    );
    expect(err.reason).toBe(FORCE_REFRESH_BUDGET);
    expect(w.table.items.get(KEY)?.forcedFetchAtEpochMs).toBe(spentAtMs);
    expect(w.table.items.get(KEY)?.lease).toBeUndefined();
    expect(w.fetchedAtMs).toHaveLength(0);
  });
});

describe('refresh ahead', () => {
  it('leaves the key alone for REFRESH_RETRY_AFTER_MS after a failed refresh (no hot retry), and logs the reason', async () => {
    const w = world();
    const current = { token: w.seed(3000), source: 'memory' as const };
    let attempts = 0;
    const lease = w.container({
      fetch: async () => {
        attempts += 1;
        throw new UnavailableError('the token endpoint timed out', 'upstream_timeout');
      },
    });
    const seen = observed();
    const req = w.request({ log: seen.log, keyFields: { client: 'limitrail', scopeHash: 'abc' } });
    expect(await lease.refreshAhead(req, current)).toBe(current);
    expect(seen.warnings).toEqual([expect.objectContaining({ client: 'limitrail', reason: 'upstream_timeout' })]);
    w.advance(REFRESH_RETRY_AFTER_MS - 1);
    expect(await lease.refreshAhead(req, current)).toBe(current);
    expect(attempts).toBe(1);
    w.advance(1);
    await lease.refreshAhead(req, current);
    expect(attempts).toBe(2);
  });

  it('hands the fetch the current token as the one it replaces when the table holds none (a re-issue is recognized)', async () => {
    const w = world();
    const current = { token: w.seed(3000), source: 'memory' as const };
    w.table.items.delete(KEY);
    const seen: (CachedToken | undefined)[] = [];
    const lease = w.container({
      fetch: async (ctx) => {
        seen.push(ctx.previous);
        return { accessToken: 'next', scopes: ['a'], ...lifetimeOf(w.nowMs(), 3600) };
      },
    });
    expect((await lease.refreshAhead(w.request(), current)).source).toBe('endpoint');
    expect(seen).toEqual([current.token]);
  });
});

describe('prewarm', () => {
  it('answers fresh, fetching nothing, when another container wrote a fresh token between its look and its take', async () => {
    const w = world();
    w.seed(3000);
    const written: CachedToken = { accessToken: 'written-meanwhile', scopes: ['a'], ...lifetimeOf(w.nowMs(), 3600) };
    const racing = viewOf(w.table, {
      tryAcquireLease: async (key, owner, request) => {
        await w.table.writeToken(key, written, 'limitrail');
        return w.table.tryAcquireLease(key, owner, request);
      },
    });
    expect(await w.container(undefined, racing).refreshIfDue(w.request())).toBe('fresh');
    expect(w.fetchedAtMs).toHaveLength(0);
    expect(w.table.items.get(KEY)?.lease).toBeUndefined();
  });
});

describe('a holder fetching with retries', () => {
  it('renews its lease before each retry, so no other container can take it while the holder is still fetching', async () => {
    const w = world();
    let takenByOther: boolean | undefined;
    const lease = w.container({
      fetch: async (ctx) => {
        w.advance(LEASE_MS - 1_000);
        await ctx.beforeRetry?.();
        w.advance(2_000); // past the end of the lease as first taken
        const other = await w.table.tryAcquireLease(KEY, 'another-container', {
          nowMs: w.nowMs(),
          leaseDurationMs: LEASE_MS,
        });
        takenByOther = other.acquired;
        return { accessToken: 'after-a-retry', scopes: ['a'], ...lifetimeOf(w.nowMs(), 3600) };
      },
    });
    expect(await lease.obtain(w.request())).toMatchObject({
      source: 'endpoint',
      token: { accessToken: 'after-a-retry' },
    });
    expect(takenByOther).toBe(false);
  });

  it('serves a token it could not write, logs the reason, and gives the lease back at once', async () => {
    const w = world();
    const seen = observed();
    const failing = viewOf(w.table, {
      writeToken: async () => {
        throw new UnavailableError('DynamoDB update failed', 'table_unavailable');
      },
    });
    const outcome = await w
      .container(undefined, failing)
      .obtain(w.request({ log: seen.log, keyFields: { client: 'limitrail' } }));
    expect(outcome).toMatchObject({ source: 'endpoint', aroundTable: true });
    expect(seen.warnings).toEqual([expect.objectContaining({ client: 'limitrail', reason: 'table_unavailable' })]);
    expect(w.table.items.get(KEY)?.lease).toBeUndefined();
  });
});
