import { setImmediate as nextTick } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { sha256Hex } from '../../functions/lib/cache-key';
import type { ClientConfig } from '../../functions/lib/config';
import { UnavailableError } from '../../functions/lib/errors';
import { FORCE_REFRESH_LIMITED } from '../../functions/lib/forced-refresh';
import { CLOCK_SKEW_MS } from '../../functions/lib/lease-rules';
import { Logger } from '../../functions/lib/logger';
import { MemoryTokenCache } from '../../functions/lib/memory-cache';
import { type KeyedRequest, type LeaseStore, RefreshLease } from '../../functions/lib/refresh-lease';
import { type CachedToken, isServable, lifetimeOf } from '../../functions/lib/token-lifetime';
import type { Lease, LeaseAttempt, LeaseRequest, StoredEntry } from '../../functions/lib/token-store';

/**
 * The lease protocol against an in-memory table whose conditional writes are token-store.ts's DynamoDB conditions
 * written out, with a fake clock that sleeping moves: waiting times are measured exactly, not timed.
 */
const LEASE_MS = 8_000;
const INTERVAL_MS = 30_000;
const KEY = 'v1:key';
const START_MS = Date.parse('2026-11-29T06:00:00Z');

interface FakeItem {
  token?: CachedToken;
  lease?: Lease;
  forcedFetchAtEpochMs?: number;
}

class FakeTable implements LeaseStore {
  readonly items = new Map<string, FakeItem>();
  acquisitions = 0;

  async read(key: string): Promise<StoredEntry> {
    return this.#entry(key);
  }

  async tryAcquireLease(key: string, owner: string, { nowMs, leaseDurationMs, forceRefreshIntervalMs }: LeaseRequest): Promise<LeaseAttempt> {
    this.acquisitions += 1;
    const item = this.items.get(key) ?? {};
    const until = item.lease?.untilEpochMs;
    const forcedAt = item.forcedFetchAtEpochMs;
    // attribute_not_exists(leaseUntilEpochMs) OR leaseUntilEpochMs <= :now OR leaseUntilEpochMs > :now + duration + skew
    const leaseFree = until === undefined || until <= nowMs || until > nowMs + leaseDurationMs + 1_000;
    // attribute_not_exists(forcedFetchAtEpochMs) OR forcedFetchAtEpochMs <= :now - interval OR forcedFetchAtEpochMs > :now + skew
    const forcedFree =
      forceRefreshIntervalMs === undefined || forcedAt === undefined || forcedAt <= nowMs - forceRefreshIntervalMs || forcedAt > nowMs + 1_000;
    if (!leaseFree || !forcedFree) return { acquired: false, entry: this.#entry(key) };
    const claimed = forceRefreshIntervalMs === undefined ? {} : { forcedFetchAtEpochMs: nowMs };
    this.items.set(key, { ...item, ...claimed, lease: { owner, untilEpochMs: nowMs + leaseDurationMs } });
    return { acquired: true, entry: this.#entry(key) };
  }

  async writeToken(key: string, token: CachedToken, _client: string, owner?: string): Promise<boolean> {
    const item = this.items.get(key) ?? {};
    const older = item.token === undefined || item.token.expiresAtEpochSec <= token.expiresAtEpochSec;
    if (!older || (item.lease !== undefined && item.lease.owner !== owner)) return false;
    this.items.set(key, { ...item, token, lease: undefined });
    return true;
  }

  async renewLease(key: string, owner: string, untilEpochMs: number): Promise<boolean> {
    const item = this.items.get(key);
    if (item?.lease?.owner !== owner) return false;
    item.lease = { owner, untilEpochMs };
    return true;
  }

  async releaseLease(key: string, owner: string): Promise<void> {
    const item = this.items.get(key);
    if (item?.lease?.owner === owner) item.lease = undefined;
  }

  #entry(key: string): StoredEntry {
    const { token, lease, forcedFetchAtEpochMs } = this.items.get(key) ?? {};
    return { ...(token ? { token } : {}), ...(lease ? { lease: { ...lease } } : {}), ...(forcedFetchAtEpochMs === undefined ? {} : { forcedFetchAtEpochMs }) };
  }
}

/** One world: a table, a clock, a token endpoint that counts requests; containers share the first three. */
const world = () => {
  let nowMs = START_MS;
  const clock = { nowMs: () => nowMs };
  const table = new FakeTable();
  const fetchedAtMs: number[] = [];
  const fetcher = {
    fetch: async (): Promise<CachedToken> => {
      fetchedAtMs.push(nowMs);
      await nextTick(); // a request takes a moment: concurrent requests overlap it
      return { accessToken: `token-${fetchedAtMs.length}`, scopes: ['a'], ...lifetimeOf(nowMs, 3600) };
    },
  };
  const container = () =>
    new RefreshLease({
      store: table,
      fetcher,
      memory: new MemoryTokenCache(10),
      clock,
      leaseDurationMs: LEASE_MS,
      forceRefreshIntervalMs: INTERVAL_MS,
      random: () => 0.5,
      sleep: async (ms) => {
        nowMs += ms;
        await nextTick();
      },
    });
  const client: ClientConfig = {
    name: 'limitrail',
    secretId: 'secret',
    tokenUrl: 'https://auth.example/connect/token',
    clientId: 'lr_1',
    scopes: new Set(['a']),
    prewarm: [],
  };
  const request = (over: Partial<KeyedRequest> = {}): KeyedRequest => ({
    client,
    scopes: ['a'],
    minTtlSec: 60,
    cacheKey: KEY,
    accept: (token, atMs) => isServable(token, atMs, 60),
    deadlineMs: nowMs + 60_000,
    log: new Logger(() => undefined),
    keyFields: {},
    degraded: () => undefined,
    ...over,
  });
  /** A forced refresh, as the broker builds it: with a fingerprint it accepts any other token, without one none. */
  const forced = (rejected?: CachedToken) =>
    request({
      forceRefresh: true,
      rejectedTokenSha256: rejected && sha256Hex(rejected.accessToken),
      accept: rejected ? (token, atMs) => isServable(token, atMs, 60) && token.accessToken !== rejected.accessToken : () => false,
    });
  const seed = (ageSec: number): CachedToken => {
    const token = { accessToken: 'token-0', scopes: ['a'], ...lifetimeOf(nowMs - ageSec * 1000, 3600) };
    table.items.set(KEY, { token });
    return token;
  };
  const refusal = async (pending: Promise<unknown>) => {
    const err = await pending.then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as UnavailableError).reason).toBe(FORCE_REFRESH_LIMITED);
    return (err as UnavailableError).toOAuth();
  };
  return {
    table,
    fetchedAtMs,
    container,
    request,
    forced,
    seed,
    refusal,
    nowMs: () => nowMs,
    advance: (ms: number) => (nowMs += ms),
  };
};

describe('a dead or misbehaving lease holder', () => {
  const written = [-1, 0, 1, LEASE_MS / 2, LEASE_MS, LEASE_MS + CLOCK_SKEW_MS, LEASE_MS + CLOCK_SKEW_MS + 1, 3_600_000, 10 * 365 * 86_400_000];

  it.each(written)('delays a miss at most REFRESH_LEASE_MS plus the clock skew when its lease ends %i ms after the miss sees it', async (offsetMs) => {
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
  });

  it('keeps refresh ahead quiet for at most REFRESH_LEASE_MS after seeing the lease held, whatever the lease says', async () => {
    const w = world();
    const due = w.seed(3000);
    w.table.items.set(KEY, { token: due, lease: { owner: 'another-container', untilEpochMs: w.nowMs() + LEASE_MS + CLOCK_SKEW_MS } });
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
