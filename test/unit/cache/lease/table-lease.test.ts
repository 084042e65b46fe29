import { describe, expect, it } from 'vitest';
import { CLOCK_SKEW_MS } from '../../../../functions/lib/cache/lease/lease-rules';
import { lifetimeOf } from '../../../../functions/lib/domain/cached-token';
import type { LeaseAttempt, LeaseRequest, StoredEntry, TokenTable } from '../../../../functions/lib/ports';
import { type FakeTable, INTERVAL_MS, KEY, LEASE_MS, world } from '../../../support/fakes/lease-world';

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
  const written = [
    -1,
    0,
    1,
    LEASE_MS / 2,
    LEASE_MS,
    LEASE_MS + CLOCK_SKEW_MS,
    LEASE_MS + CLOCK_SKEW_MS + 1,
    3_600_000,
    10 * 365 * 86_400_000,
  ];

  it.each(written)(
    'delays a miss at most REFRESH_LEASE_MS plus the clock skew when its lease ends %i ms after the miss sees it',
    async (offsetMs) => {
      const w = world();
      w.table.items.set(KEY, { lease: { owner: 'a-holder-that-never-writes', untilEpochMs: w.nowMs() + offsetMs } });
      const seenAtMs = w.nowMs();
      const outcome = await w.container().obtain(w.request());
      expect(outcome.source).toBe('endpoint');
      expect(w.fetchedAtMs).toHaveLength(1);
      const delayMs = w.fetchedAtMs[0]! - seenAtMs;
      expect(delayMs).toBeLessThanOrEqual(LEASE_MS + CLOCK_SKEW_MS);
      // A lease no holder could have set (pinned) is taken over at once.
      if (offsetMs > LEASE_MS + CLOCK_SKEW_MS || offsetMs <= 0) expect(delayMs).toBe(0);
    },
  );

  it.each([1, LEASE_MS / 2, LEASE_MS + CLOCK_SKEW_MS])(
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
