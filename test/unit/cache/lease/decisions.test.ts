import { setImmediate as nextTick } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import {
  decideForced,
  decideMiss,
  decidePrewarm,
  decideRefreshAhead,
  type LeaseView,
  REFRESH_RETRY_AFTER_MS,
} from '../../../../functions/lib/cache/lease/decisions';
import { type CachedToken, isServable, lifetimeOf } from '../../../../functions/lib/domain/cached-token';
import type { StoredEntry } from '../../../../functions/lib/ports';
import { KEY, LEASE_MS, world } from '../../../support/fakes/lease-world';

/**
 * The lease protocol's decisions as tables (pure: an item, a moment, who holds the lease), then races between
 * containers through the one loop that performs them, against the in-memory table and a fake clock.
 */
const NOW = Date.parse('2026-11-29T06:00:00Z');
const token = (ageSec: number, name = 'current'): CachedToken => ({
  accessToken: name,
  scopes: ['a'],
  ...lifetimeOf(NOW - ageSec * 1000, 3600),
});
const fresh = token(60);
const due = token(3000); // past its refresh point (75 % of 3600 s), still valid
const lease = { owner: 'other', untilEpochMs: NOW + 1000 };
const view = (entry: StoredEntry | undefined, over: Partial<LeaseView> = {}): LeaseView => ({
  entry,
  nowMs: NOW,
  heldByOther: false,
  owned: false,
  lost: false,
  ...over,
});
const accept60 = (t: CachedToken, nowMs: number) => isServable(t, nowMs, 60);
const stepOf = (step: { step: string; token?: CachedToken; value?: unknown }) =>
  step.step === 'serve'
    ? `serve ${step.token!.accessToken}`
    : step.step === 'yield'
      ? `yield ${JSON.stringify(step.value)}`
      : step.step;

describe('decisions', () => {
  it.each([
    ['nothing read yet', undefined, {}, 'take'],
    ['a token that answers the request', { token: fresh }, {}, 'serve current'],
    ['a due but valid token (a miss still accepts it)', { token: due }, {}, 'serve current'],
    ['no token, lease held by another', { lease }, { heldByOther: true }, 'wait'],
    ['no token, lease free', {}, {}, 'take'],
    ['holding the lease, a fresh token was just written', { token: fresh }, { owned: true }, 'serve current'],
    ['holding the lease, the token is due', { token: due }, { owned: true }, 'fetch'],
    ['holding the lease, nothing there', {}, { owned: true }, 'fetch'],
  ])('a miss with %s: %s', (_name, entry, over, expected) => {
    expect(stepOf(decideMiss(accept60)(view(entry, over)))).toBe(expected);
  });

  it.each([
    ['first look', { token: due }, {}, 'take'],
    ['a newer token another container wrote', { token: token(10, 'newer') }, {}, 'serve newer'],
    ['the lease was taken by another', { token: due, lease }, { lost: true }, `yield {"quietUntilMs":${NOW + 1000}}`],
    [
      'a pinned lease (a day out): quiet no longer than a lease',
      { token: due, lease: { owner: 'x', untilEpochMs: NOW + 86_400_000 } },
      { lost: true },
      `yield {"quietUntilMs":${NOW + LEASE_MS}}`,
    ],
    ['holding the lease', { token: due }, { owned: true }, 'fetch'],
    [
      'a shorter-lived token another container wrote, not yet due but expiring before the current one (not newer)',
      { token: { ...token(10, 'shorter'), expiresAtEpochSec: due.expiresAtEpochSec - 1 } },
      {},
      'take',
    ],
    [
      'the take was lost on an item that shows no lease: quiet for REFRESH_RETRY_AFTER_MS, no hot retry',
      { token: due },
      { lost: true },
      `yield {"quietUntilMs":${NOW + REFRESH_RETRY_AFTER_MS}}`,
    ],
  ])('refresh ahead, %s: %s', (_name, entry, over, expected) => {
    expect(stepOf(decideRefreshAhead(due, LEASE_MS, accept60)(view(entry, over)))).toBe(expected);
  });

  it.each([
    ['first look', {}],
    ['holding the lease', { owned: true }],
  ])(
    'refresh ahead for a forced refresh that reported the newer token rejected, %s: keeps the current one',
    (_n, over) => {
      const newer = token(10, 'newer');
      const notNewer = (t: CachedToken, nowMs: number) => accept60(t, nowMs) && t.accessToken !== 'newer';
      const step = decideRefreshAhead(due, LEASE_MS, notNewer)(view({ token: newer }, over));
      expect(stepOf(step)).toBe(`yield {"quietUntilMs":${NOW}}`);
    },
  );

  it.each([
    ['claimed the forced fetch, a fresh token there', 'fetch', { token: fresh }, { claimed: true }],
    ['did not claim it (spent interval), a fresh token was just written', 'serve current', { token: fresh }, {}],
    ['did not claim it, a due token', 'fetch', { token: due }, {}],
    ['did not claim it, nothing there', 'fetch', {}, {}],
  ])('a forced refresh without a fingerprint holding the lease, %s: %s', (_name, expected, entry, over) => {
    const forced = world().forced();
    expect(stepOf(decideForced(forced, 30_000)(view(entry, { owned: true, ...over })))).toBe(expected);
  });

  it("refuses a forced refresh of the current token inside the key's interval: 503 naming the interval in seconds", () => {
    const step = decideForced(
      world().forced(fresh),
      30_000,
    )(view({ token: fresh, forcedFetchAtEpochMs: NOW - 17_600 }));
    expect(step.step === 'refuse' && step.error.toOAuth()).toEqual({
      error: 'temporarily_unavailable',
      error_description:
        'the current token is the one reported rejected, and forced refreshes of this scope set fetch at most once every 30 s; retry in 13 s',
      status: 503,
      retryAfterSeconds: 13,
    });
  });

  it('a forced refresh holding the lease without the claim never serves the token it reported rejected', () => {
    const forced = world().forced(fresh);
    expect(stepOf(decideForced(forced, 30_000)(view({ token: fresh }, { owned: true })))).toBe('fetch');
  });

  it.each([
    ['a fresh token', { token: fresh }, {}, 'yield "fresh"'],
    ['a due token', { token: due }, {}, 'take'],
    ['nothing', {}, {}, 'take'],
    ['the lease was taken by another', { token: due, lease }, { lost: true }, 'yield "in_progress"'],
    ['holding the lease, someone just refreshed it', { token: fresh }, { owned: true }, 'serve current'],
    ['holding the lease', { token: due }, { owned: true }, 'fetch'],
  ])('prewarm, %s: %s', (_name, entry, over, expected) => {
    expect(stepOf(decidePrewarm(view(entry, over)))).toBe(expected);
  });
});

describe('races between containers (one loop, in-memory table, fake clock)', () => {
  it('two containers missing at once: one takes the lease and fetches, the other waits and gets its token', async () => {
    const w = world();
    const [a, b] = [w.container(), w.container()];
    const [first, second] = await Promise.all([a.obtain(w.request()), b.obtain(w.request())]);
    expect(w.fetchedAtMs).toHaveLength(1);
    expect(second.token).toEqual(first.token);
    expect([first.source, second.source].sort()).toEqual(['endpoint', 'table']);
    expect(w.table.items.get(KEY)!.lease).toBeUndefined(); // the write released it
  });

  it('interleaved: A takes the lease, B waits, A writes and releases, C arrives after: one fetch for all three', async () => {
    const w = world();
    const [a, b, c] = [w.container(), w.container(), w.container()];
    const pendingA = a.obtain(w.request());
    await nextTick(); // A has taken the lease and is fetching
    expect(w.table.items.get(KEY)!.lease).toBeDefined();
    const pendingB = b.obtain(w.request());
    const [fromA, fromB] = await Promise.all([pendingA, pendingB]);
    const fromC = await c.obtain(w.request());
    expect(w.fetchedAtMs).toHaveLength(1);
    expect(fromB.token).toEqual(fromA.token);
    expect(fromC).toEqual({ token: fromA.token, source: 'table' });
  });

  it('a holder that dies mid-refresh: the next container takes over once its lease ends, and fetches once', async () => {
    const w = world();
    w.table.items.set(KEY, { lease: { owner: 'dead-container', untilEpochMs: w.nowMs() + LEASE_MS } });
    const startMs = w.nowMs();
    const outcome = await w.container().obtain(w.request());
    expect(outcome.source).toBe('endpoint');
    expect(w.fetchedAtMs).toEqual([startMs + LEASE_MS]);
  });

  it('refresh ahead while another container holds the lease: served the current token at once, no wait, no fetch', async () => {
    const w = world();
    const current = w.seed(3000);
    w.table.items.set(KEY, { token: current, lease: { owner: 'other', untilEpochMs: w.nowMs() + 2000 } });
    const startMs = w.nowMs();
    const outcome = await w.container().refreshAhead(w.request(), { token: current, source: 'memory' });
    expect(outcome).toEqual({ token: current, source: 'memory' });
    expect(w.nowMs()).toBe(startMs);
    expect(w.fetchedAtMs).toHaveLength(0);
  });

  it('a re-issued token: the fetch sees the token it replaces, and a token marked re-issued is not refreshed ahead again', async () => {
    const w = world();
    const current = w.seed(3000);
    const seen: (CachedToken | undefined)[] = [];
    const container = w.container({
      fetch: async (ctx) => {
        seen.push(ctx.previous);
        // The endpoint answers with the same token: what EndpointTokenProvider then stores (refresh point = expiry).
        return { ...ctx.previous!, refreshAtEpochSec: ctx.previous!.expiresAtEpochSec, reissued: true };
      },
    });
    const refreshed = await container.refreshAhead(w.request(), { token: current, source: 'memory' });
    expect(seen).toEqual([current]);
    expect(refreshed.token.reissued).toBe(true);
    expect(await container.refreshIfDue(w.request())).toBe('fresh');
    expect(seen).toHaveLength(1);
  });
});
