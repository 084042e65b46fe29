import { setImmediate as nextTick } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { TokenBroker } from '../../../functions/lib/broker/token-broker';
import { forcedRefreshLimited } from '../../../functions/lib/cache/lease/forced-refresh';
import { TableLease } from '../../../functions/lib/cache/lease/table-lease';
import { MemoryTokenCache } from '../../../functions/lib/cache/memory-cache';
import { loadConfig } from '../../../functions/lib/config/load-config';
import { tokenFingerprint } from '../../../functions/lib/domain/cache-key';
import { lifetimeOf } from '../../../functions/lib/domain/cached-token';
import { ClientCredentials } from '../../../functions/lib/domain/client-credentials';
import type { KeyedRequest } from '../../../functions/lib/domain/token-request';
import { parseTokenRequest } from '../../../functions/lib/handlers/read-token-request';
import type {
  CredentialSource,
  FetchRequest,
  LeaseProtocol,
  Outcome,
  StoredEntry,
  TokenProvider,
  TokenTable,
} from '../../../functions/lib/ports';
import { ConfigurationError, InvalidScopeError, UnavailableError } from '../../../functions/lib/shared/errors';
import { sha256Hex } from '../../../functions/lib/shared/hash';
import type { Log } from '../../../functions/lib/shared/logger';
import type { MetricName, MetricsSink } from '../../../functions/lib/shared/metrics';
import { FakeTable, OutageTable } from '../../support/fakes/fake-table';
import { silentLog } from '../../support/fakes/silent-log';

/**
 * The token path's decisions (broker.ts) with every adapter faked behind its interface: an in-memory table with the
 * store's conditions, a credential source, a token endpoint that counts requests, and a fake clock. The real
 * broker, lease protocol and memory cache run over them.
 */
const START_MS = Date.parse('2026-11-29T06:00:00Z');
const config = loadConfig({
  CALLER_PROOF_AUDIENCE: 'broker',
  TOKEN_TABLE_NAME: 'tokens',
  TOKEN_KMS_KEY_ID: 'key',
  BROKER_CLIENTS: JSON.stringify({
    limitrail: { secretId: 's', tokenUrl: 'https://auth.example/connect/token', clientId: 'lr_1', scopes: ['a', 'b'] },
  }),
});

const setup = () => {
  let nowMs = START_MS;
  const clock = { nowMs: () => nowMs };
  const table = new FakeTable();
  const store = new OutageTable(table);
  const secrets: CredentialSource = {
    get: async () => new ClientCredentials('s', 'lr_1', 'secret', 'v1'),
    previous: async () => undefined,
    remember: () => undefined,
  };
  const fetches: FetchRequest[] = [];
  let endpointDown: boolean | Error = false;
  let endpointTakesMs = 0;
  const fetcher: TokenProvider = {
    fetch: async (ctx) => {
      fetches.push(ctx);
      nowMs += endpointTakesMs;
      await nextTick();
      if (endpointDown instanceof Error) throw endpointDown;
      if (endpointDown) throw new UnavailableError('the token endpoint failed', 'upstream_unavailable');
      return { accessToken: `token-${fetches.length}`, scopes: [...ctx.scopes], ...lifetimeOf(nowMs, 3600) };
    },
  };
  const memory = new MemoryTokenCache(10);
  /** The refresh lease over this table and endpoint, keeping fetched tokens in `memoryOfLease`. */
  const leaseWith = (memoryOfLease: MemoryTokenCache) =>
    new TableLease({
      store,
      fetcher,
      memory: memoryOfLease,
      clock,
      leaseDurationMs: 8000,
      forceRefreshIntervalMs: 30_000,
      random: () => 0.5,
    });
  const lease = leaseWith(memory);
  const container = () =>
    new TokenBroker({
      config,
      clock,
      log: silentLog,
      secrets,
      store,
      memory: new MemoryTokenCache(10),
      fetcher,
      lease,
    });
  const broker = new TokenBroker({ config, clock, log: silentLog, secrets, store, memory, fetcher, lease });
  const ask = (
    b: TokenBroker,
    event: Record<string, unknown> = { scopes: ['a'] },
    allowedScopes?: ReadonlySet<string>,
    options: { principal?: string; metrics?: MetricsSink; log?: Log } = {},
  ) =>
    b.getToken(parseTokenRequest(event, config), {
      deadlineMs: nowMs + 10_000,
      log: silentLog,
      ...(allowedScopes ? { allowedScopes } : {}),
      ...options,
    });
  return {
    broker,
    container,
    ask,
    fetches,
    table,
    tableCalls: store,
    advance: (ms: number) => (nowMs += ms),
    setTableDown: (down: boolean) => {
      store.down = down;
    },
    /** Down: the endpoint fails with upstream_unavailable, or with the error given. */
    setEndpointDown: (down: boolean | Error) => (endpointDown = down),
    /** The parts, for a container built otherwise (a smaller memory, another view of the table). */
    parts: { config, clock, log: silentLog, secrets, store, fetcher, lease },
    leaseWith,
    setEndpointTakesMs: (ms: number) => (endpointTakesMs = ms),
  };
};

/** A log and a metrics sink that keep what they are given: every line (level, message, fields) and each count. */
const counting = () => {
  const counts = new Map<MetricName, number>();
  const lines: { level: 'info' | 'warn' | 'error'; message: string; fields: Record<string, unknown> }[] = [];
  const metrics: MetricsSink = {
    count: (name, n = 1) => counts.set(name, (counts.get(name) ?? 0) + n),
    record: () => {},
  };
  const log: Log = {
    child: () => log,
    debug: () => undefined,
    info: (message, fields) => lines.push({ level: 'info', message, fields: fields ?? {} }),
    warn: (message, fields) => lines.push({ level: 'warn', message, fields: fields ?? {} }),
    error: (message, fields) => lines.push({ level: 'error', message, fields: fields ?? {} }),
  };
  return {
    counts,
    lines,
    get warnings() {
      return lines.filter((l) => l.level === 'warn').map((l) => l.fields);
    },
    metrics,
    log,
  };
};

describe('the token path with faked adapters', () => {
  it('fetches on a miss, then answers from memory without touching the table', async () => {
    const t = setup();
    expect((await t.ask(t.broker)).source).toBe('endpoint');
    const reads = t.tableCalls.reads;
    const again = await t.ask(t.broker);
    expect(again.source).toBe('memory');
    expect(t.tableCalls.reads).toBe(reads);
    expect(t.fetches).toHaveLength(1);
  });

  it('serves a cold container from the table, and concurrent misses in one container share one fetch', async () => {
    const t = setup();
    const answers = await Promise.all(Array.from({ length: 10 }, () => t.ask(t.broker, { scopes: ['b', 'a', 'a'] })));
    expect(new Set(answers.map((a) => a.answer.access_token)).size).toBe(1);
    expect(t.fetches).toHaveLength(1);
    expect((await t.ask(t.container(), { scopes: ['a', 'b'] })).source).toBe('table');
  });

  it('refreshes ahead past the refresh point with one request, while the others are served the current token', async () => {
    const t = setup();
    const first = await t.ask(t.broker);
    t.advance(2800 * 1000); // past 75 % of 3600 s
    const [one, two] = await Promise.all([t.ask(t.broker), t.ask(t.broker)]);
    expect(t.fetches).toHaveLength(2);
    expect([one.answer.access_token, two.answer.access_token]).toContain(first.answer.access_token);
    expect((await t.ask(t.broker)).answer.access_token).toBe('token-2');
  });

  it('works from memory and the endpoint while the table is down', async () => {
    const t = setup();
    t.setTableDown(true);
    expect((await t.ask(t.broker)).source).toBe('endpoint');
    expect((await t.ask(t.broker)).source).toBe('memory');
    expect(t.fetches).toHaveLength(1);
  });

  it('answers a still-valid token as stale when the endpoint fails, and an error when nothing valid is left', async () => {
    const t = setup();
    await t.ask(t.broker);
    t.advance(3500 * 1000); // 100 s left: below the caller's 120 s, above the 30 s floor
    t.setEndpointDown(true);
    const stale = await t.ask(t.container(), { scopes: ['a'], minTtlSeconds: 120 });
    expect(stale.answer).toMatchObject({ access_token: 'token-1', stale: true });
    t.advance(90 * 1000);
    await expect(t.ask(t.container(), { scopes: ['a'], minTtlSeconds: 120 })).rejects.toMatchObject({
      error: 'temporarily_unavailable',
    });
  });

  // A token past its refresh point that answers the request; the refresh ahead fails after the endpoint's time, when
  // it no longer does: answered stale if it still has the 30 s floor, else the error; never as if it still answered.
  it.each([
    { leftSec: 130, minTtlSeconds: 120, endpointTakesMs: 20_000, outcome: 'stale (110 s left)' },
    { leftSec: 50, minTtlSeconds: 40, endpointTakesMs: 25_000, outcome: 'the error (25 s left)' },
  ])(
    'answers a refresh ahead that failed $endpointTakesMs ms later, with $leftSec s left at the start: $outcome',
    async ({ leftSec, minTtlSeconds, endpointTakesMs, outcome }) => {
      const t = setup();
      await t.ask(t.broker);
      t.advance((3600 - leftSec) * 1000);
      t.setEndpointDown(true);
      t.setEndpointTakesMs(endpointTakesMs);
      const answered = t.ask(t.broker, { scopes: ['a'], minTtlSeconds });
      if (outcome.startsWith('stale'))
        expect((await answered).answer).toMatchObject({ access_token: 'token-1', stale: true });
      else await expect(answered).rejects.toMatchObject({ error: 'temporarily_unavailable' });
      expect(t.fetches).toHaveLength(2);
    },
  );

  it('hands a token only to a caller entitled to every scope it carries', async () => {
    const t = setup();
    await expect(t.ask(t.broker, { scopes: ['a'] }, new Set(['b']))).rejects.toMatchObject({
      error: 'access_denied',
      reason: 'token_scope_beyond_grant',
    });
    expect((await t.ask(t.broker, { scopes: ['a'] }, new Set(['a', 'b']))).answer.scope).toBe('a');
  });

  it('prewarms a missing scope set once, then reports it fresh', async () => {
    const t = setup();
    const client = config.clients.get('limitrail')!;
    expect(await t.broker.prewarm(client, ['a'], { deadlineMs: START_MS + 10_000 })).toBe('refreshed');
    expect(await t.broker.prewarm(client, ['a'], { deadlineMs: START_MS + 10_000 })).toBe('fresh');
    expect(t.fetches).toHaveLength(1);
  });
});

describe("a caller's forced refreshes across scope sets", () => {
  const rejecting = (scopes: string[], token?: string) => ({
    scopes,
    forceRefresh: true,
    ...(token === undefined ? {} : { rejectedTokenSha256: sha256Hex(token) }),
  });

  it('fetch once per interval per proven principal and client, whatever the scopes; another principal has its own', async () => {
    const t = setup();
    const sets = [['a'], ['b'], ['a', 'b']];
    const current = [];
    for (const scopes of sets) current.push((await t.ask(t.broker, { scopes })).answer.access_token);
    const billing = { principal: 'role:aws:111111111111:billing' };
    expect((await t.ask(t.container(), rejecting(sets[0]!, current[0]), undefined, billing)).source).toBe('endpoint');
    for (const i of [1, 2]) {
      await expect(t.ask(t.container(), rejecting(sets[i]!, current[i]), undefined, billing)).rejects.toMatchObject({
        reason: 'force_refresh_budget',
        retryAfterSeconds: 30,
      });
    }
    // Without a fingerprint, over budget: refused too, never answered with the cached token as a stale one.
    await expect(t.ask(t.container(), rejecting(sets[1]!), undefined, billing)).rejects.toMatchObject({
      reason: 'force_refresh_budget',
    });
    const reporting = { principal: 'role:aws:111111111111:reporting' };
    expect((await t.ask(t.container(), rejecting(sets[1]!, current[1]), undefined, reporting)).source).toBe('endpoint');
    expect(t.fetches).toHaveLength(5);
    // Once the interval is over, direct invokes without a proof share one budget.
    t.advance(30_000);
    expect((await t.ask(t.container(), rejecting(sets[0]!, 'token-4'))).source).toBe('endpoint');
    await expect(t.ask(t.container(), rejecting(sets[1]!, 'token-5'))).rejects.toMatchObject({
      reason: 'force_refresh_budget',
    });
  });

  it('does not let one caller share a concurrent refusal with another caller forcing the same key', async () => {
    const t = setup();
    const first = (await t.ask(t.broker, { scopes: ['a', 'b'] })).answer.access_token;
    await t.ask(t.broker, { scopes: ['a'] });
    await t.ask(t.broker, rejecting(['a'], 'token-2'), undefined, { principal: 'spent' }); // spends its budget
    const [over, fresh] = await Promise.allSettled([
      t.ask(t.broker, rejecting(['a', 'b'], first), undefined, { principal: 'spent' }),
      t.ask(t.broker, rejecting(['a', 'b'], first), undefined, { principal: 'fresh' }),
    ]);
    expect(fresh).toMatchObject({ status: 'fulfilled', value: { source: 'endpoint' } });
    // The caller over budget is refused, or, if it looked after the other's fetch, served that token.
    if (over.status === 'rejected') expect(over.reason).toMatchObject({ reason: 'force_refresh_budget' });
    else expect(over.value.answer.access_token).not.toBe(first);
  });
});

describe('a table rolled back to an older token', () => {
  it('is not served by a container that served the newer one: a miss, logged rollback_suspected and counted', async () => {
    const t = setup();
    const c = t.container();
    const first = await t.ask(c, { scopes: ['a'] });
    const saved = structuredClone([...t.table.items.entries()][0]!);
    t.advance(60_000);
    const second = await t.ask(c, {
      scopes: ['a'],
      forceRefresh: true,
      rejectedTokenSha256: sha256Hex(first.answer.access_token),
    });
    expect(second.answer.access_token).toBe('token-2');
    // A table writer puts the first item back.
    t.table.items.set(saved[0], saved[1]);
    t.advance(31_000);
    const seen = counting();
    // Inside no interval any more, a forced refresh without a fingerprint would be served the table's token if it
    // trusted it; this container saw token-2 and refuses the older one: it fetches.
    const third = await t.ask(c, { scopes: ['a'], forceRefresh: true }, undefined, seen);
    expect(third.answer.access_token).toBe('token-3');
    expect(seen.counts.get('RollbackSuspected')).toBeGreaterThanOrEqual(1);
    expect(seen.warnings.find((w) => w.reason === 'rollback_suspected')).toMatchObject({
      verdict: 'older_than_served',
      tokenFingerprint: sha256Hex('token-1').slice(0, 12),
    });
    // A container that never saw the newer token cannot tell: it is served the table's token (docs/security.md).
    t.table.items.set(saved[0], saved[1]);
    expect((await t.ask(t.container(), { scopes: ['a'] })).answer.access_token).toBe('token-1');
  });

  it('refuses a token reported rejected and replaced, even inside the forced-refresh interval', async () => {
    const t = setup();
    const c = t.container();
    const first = await t.ask(c, { scopes: ['a'] });
    const saved = structuredClone([...t.table.items.entries()][0]!);
    await t.ask(c, { scopes: ['a'], forceRefresh: true, rejectedTokenSha256: sha256Hex(first.answer.access_token) });
    t.table.items.set(saved[0], {
      ...saved[1],
      forcedFetchAtEpochMs: t.table.items.get(saved[0])!.forcedFetchAtEpochMs,
    });
    const seen = counting();
    // Inside the key's interval a forced refresh without a fingerprint takes the table's token: not this one.
    const again = await t.ask(c, { scopes: ['a'], forceRefresh: true }, undefined, seen);
    expect(again.answer.access_token).not.toBe(first.answer.access_token);
    expect(seen.counts.get('RollbackSuspected')).toBeGreaterThanOrEqual(1);
  });
});

/**
 * Requests of overlapping invocations in one container (Lambda Managed Instances) that share a miss: a lease protocol
 * whose misses the test settles by hand, and a sleep the test fires, so each request's own deadline is seen exactly.
 */
const flights = () => {
  let nowMs = START_MS;
  const clock = { nowMs: () => nowMs };
  const obtains: { req: KeyedRequest; settle: (outcome: Outcome | Error) => void }[] = [];
  const lease: LeaseProtocol = {
    obtain: (req) =>
      new Promise((resolve, reject) =>
        obtains.push({ req, settle: (o) => (o instanceof Error ? reject(o) : resolve(o)) }),
      ),
    refreshAhead: async (_req, current) => current,
    refreshIfDue: async () => 'fresh',
  };
  const sleeps: { untilMs: number; wake: () => void }[] = [];
  const broker = new TokenBroker({
    config,
    clock,
    log: silentLog,
    secrets: { get: async () => new ClientCredentials('s', 'lr_1', 'secret', 'v1') } as unknown as CredentialSource,
    store: new FakeTable(),
    memory: new MemoryTokenCache(10),
    fetcher: { fetch: () => Promise.reject(new Error('unreachable: the lease fetches')) },
    lease,
    sleep: (ms) => new Promise<void>((wake) => sleeps.push({ untilMs: nowMs + ms, wake })),
  });
  /** A request with `budgetMs` left; `state()` says whether it is still waiting, answered, or failed (and why). */
  const ask = (budgetMs: number, event: Record<string, unknown> = { scopes: ['a'] }) => {
    let state: { answer?: string; reason?: string } | 'waiting' = 'waiting';
    let description: string | undefined;
    broker.getToken(parseTokenRequest(event, config), { deadlineMs: nowMs + budgetMs, log: silentLog }).then(
      ({ answer }) => (state = { answer: answer.access_token }),
      (err: UnavailableError) => {
        state = { reason: err.reason };
        description = err.message;
      },
    );
    return { state: () => state, description: () => description };
  };
  const token = (name: string): Outcome => ({
    token: { accessToken: name, scopes: ['a'], ...lifetimeOf(nowMs, 3600) },
    source: 'endpoint',
  });
  /** Moves the clock `ms` on, waking the sleeps that end by then (unless `wake` is false: a timer running late). */
  const advance = async (ms: number, wake = true) => {
    nowMs += ms;
    if (wake) for (const s of sleeps.filter((s) => s.untilMs <= nowMs)) s.wake();
    await settle();
  };
  return { ask, obtains, token, advance, sleeps };
};
const settle = async () => {
  for (let i = 0; i < 10; i++) await nextTick();
};

describe('a request sharing another invocation’s miss', () => {
  it('stops waiting at its own deadline, while the miss goes on for the request that started it', async () => {
    const f = flights();
    const long = f.ask(10_000);
    await settle();
    const short = f.ask(2_000);
    await settle();
    expect(f.obtains).toHaveLength(1); // it joined
    await f.advance(2_000);
    expect(short.state()).toEqual({ reason: 'lease_wait_timeout' });
    f.obtains[0]!.settle(f.token('token-1'));
    await settle();
    expect(long.state()).toEqual({ answer: 'token-1' });
  });

  it.each(['lease_wait_timeout', 'upstream_timeout'] as const)(
    'runs its own miss when one started with less time failed (%s), and this request has time left',
    async (reason) => {
      const f = flights();
      const short = f.ask(1_000);
      await settle();
      const long = f.ask(10_000);
      await settle();
      await f.advance(1_000);
      f.obtains[0]!.settle(new UnavailableError('its time ran out', reason));
      await settle();
      expect(short.state()).toEqual({ reason });
      expect(f.obtains).toHaveLength(2);
      expect(f.obtains[1]!.req.deadlineMs).toBe(START_MS + 10_000);
      f.obtains[1]!.settle(f.token('token-2'));
      await settle();
      expect(long.state()).toEqual({ answer: 'token-2' });
    },
  );

  it('shares any other failure of the shared miss', async () => {
    const f = flights();
    const first = f.ask(10_000);
    await settle();
    const second = f.ask(10_000);
    await settle();
    f.obtains[0]!.settle(new UnavailableError('the token endpoint failed', 'upstream_unavailable'));
    await settle();
    expect([first.state(), second.state()]).toEqual([
      { reason: 'upstream_unavailable' },
      { reason: 'upstream_unavailable' },
    ]);
    expect(f.obtains).toHaveLength(1);
  });
});

describe('the audit line of a token handed out', () => {
  const cacheKeyPrefix = (t: ReturnType<typeof setup>) => [...t.table.items.keys()][0]!.slice(0, 15);

  it('names the caller, how it was proven, the key, the source, the fingerprint and the expiry: what operators query', async () => {
    const t = setup();
    const seen = counting();
    const caller = 'arn:aws:sts::123456789012:assumed-role/billing/i-1';
    const { answer } = await t.ask(t.broker, { scopes: ['a'] }, undefined, { log: seen.log });
    const first = await t.broker.getToken(parseTokenRequest({ scopes: ['a'] }, config), {
      deadlineMs: START_MS + 10_000,
      log: seen.log,
      caller,
      identity: 'verified',
    });
    expect(first.answer.access_token).toBe(answer.access_token);
    const served = seen.lines.filter((l) => l.message === 'token served');
    expect(served.map((l) => l.level)).toEqual(['info', 'info']);
    const common = {
      audit: 'issued',
      client: 'limitrail',
      scopes: ['a'],
      cacheKey: cacheKeyPrefix(t),
      tokenFingerprint: tokenFingerprint('token-1'),
      expiresAtEpochSec: START_MS / 1000 + 3600,
    };
    expect(served[0]!.fields).toEqual({ ...common, caller: 'direct invoke', source: 'endpoint' });
    expect(served[1]!.fields).toEqual({ ...common, caller, identity: 'verified', source: 'memory' });
    expect(String(served[0]!.fields.cacheKey)).toHaveLength(15);
  });

  it('says stale: true on a stale answer, beside the degraded line and its StaleAnswers count', async () => {
    const t = setup();
    await t.ask(t.broker);
    t.advance(3500 * 1000);
    t.setEndpointDown(true);
    const seen = counting();
    const { answer } = await t.ask(t.container(), { scopes: ['a'], minTtlSeconds: 120 }, undefined, seen);
    expect(answer).toMatchObject({ access_token: 'token-1', stale: true });
    expect(seen.lines.find((l) => l.message === 'token served')?.fields).toMatchObject({
      audit: 'issued',
      source: 'table',
      stale: true,
    });
    expect(seen.lines.find((l) => l.message === 'degraded: stale answer')).toEqual({
      level: 'warn',
      message: 'degraded: stale answer',
      fields: {
        client: 'limitrail',
        scopes: ['a'],
        cacheKey: cacheKeyPrefix(t),
        degraded: 'stale_answer',
        reason: 'upstream_unavailable',
      },
    });
    expect(seen.counts.get('StaleAnswers')).toBe(1);
  });
});

/**
 * A container built as runtime.ts builds one: its broker and its lease share its memory (of `memoryEntries` keys), over
 * the table and endpoint of `t`.
 */
const containerOf = (t: ReturnType<typeof setup>, memoryEntries = 10) => {
  const memory = new MemoryTokenCache(memoryEntries);
  return new TokenBroker({ ...t.parts, memory, lease: t.leaseWith(memory) });
};

describe('the stale fallback', () => {
  it('answers a token with exactly STALE_TOKEN_MIN_TTL_SEC left', async () => {
    const t = setup();
    await t.ask(t.broker);
    t.advance((3600 - config.staleTokenMinTtlSec) * 1000);
    t.setEndpointDown(true);
    expect((await t.ask(t.container())).answer).toMatchObject({ access_token: 'token-1', stale: true });
  });

  it('answers with the longest-lived candidate: the table’s newer token over the older one in memory', async () => {
    const t = setup();
    const here = containerOf(t);
    await t.ask(here); // token-1, in this container's memory
    t.advance(100_000);
    // Another container replaces it in the table: token-2 lives 100 s longer.
    const replaced = await t.ask(containerOf(t), {
      scopes: ['a'],
      forceRefresh: true,
      rejectedTokenSha256: sha256Hex('token-1'),
    });
    expect(replaced.answer.access_token).toBe('token-2');
    t.advance(3450 * 1000); // token-1: 50 s left, token-2: 150 s; neither answers 200 s
    t.setEndpointDown(true);
    const { answer } = await t.ask(here, { scopes: ['a'], minTtlSeconds: 200 });
    expect(answer).toMatchObject({ access_token: 'token-2', stale: true });
  });

  it('answers a stale token when fetching failed with a 500 (our configuration), not only a 503', async () => {
    const t = setup();
    await t.ask(t.broker);
    t.advance(3500 * 1000);
    t.setEndpointDown(new ConfigurationError('the client secret cannot be used', 'secret_malformed'));
    const { answer } = await t.ask(t.container(), { scopes: ['a'], minTtlSeconds: 120 });
    expect(answer).toMatchObject({ access_token: 'token-1', stale: true });
  });

  it('answers a refusal of the token endpoint (4xx) as it is, never with a stale token', async () => {
    const t = setup();
    await t.ask(t.broker);
    t.advance(3500 * 1000);
    t.setEndpointDown(new InvalidScopeError('the endpoint refused the scope', 'upstream_invalid_scope'));
    await expect(t.ask(t.container(), { scopes: ['a'], minTtlSeconds: 120 })).rejects.toMatchObject({
      status: 400,
      reason: 'upstream_invalid_scope',
    });
  });

  it('never answers the token a forced refresh reported rejected, and answers any other one', async () => {
    const t = setup();
    await t.ask(t.broker);
    t.advance(3500 * 1000); // 100 s left
    t.setEndpointDown(true);
    const forced = (rejected: string) => ({
      scopes: ['a'],
      minTtlSeconds: 120,
      forceRefresh: true,
      rejectedTokenSha256: sha256Hex(rejected),
    });
    await expect(t.ask(t.container(), forced('token-1'))).rejects.toMatchObject({ reason: 'upstream_unavailable' });
    const { answer } = await t.ask(t.container(), forced('token-0'), undefined, { principal: 'another' });
    expect(answer).toMatchObject({ access_token: 'token-1', stale: true });
  });

  it('does not answer a forced refresh refused inside the interval (force_refresh_limited) with another stale token', async () => {
    const t = setup();
    const here = containerOf(t);
    await t.ask(here); // token-1, in this container's memory
    t.advance(3500 * 1000); // 100 s left
    const other = await t.ask(containerOf(t), {
      scopes: ['a'],
      forceRefresh: true,
      rejectedTokenSha256: sha256Hex('token-1'),
    });
    expect(other.answer.access_token).toBe('token-2');
    // Reporting token-2 inside the interval: refused, even though token-1 (100 s left) could be answered stale.
    await expect(
      t.ask(
        here,
        { scopes: ['a'], minTtlSeconds: 120, forceRefresh: true, rejectedTokenSha256: sha256Hex('token-2') },
        undefined,
        { principal: 'another' },
      ),
    ).rejects.toMatchObject({ reason: 'force_refresh_limited', retryAfterSeconds: 30 });
  });
});

describe('the cache layers', () => {
  it('serves a forced refresh reporting another token from memory, without a fetch or a table read', async () => {
    const t = setup();
    await t.ask(t.broker);
    const reads = t.tableCalls.reads;
    const again = await t.ask(t.broker, {
      scopes: ['a'],
      forceRefresh: true,
      rejectedTokenSha256: sha256Hex('token-0'),
    });
    expect(again).toMatchObject({ source: 'memory', answer: { access_token: 'token-1' } });
    expect(t.tableCalls.reads).toBe(reads);
    expect(t.fetches).toHaveLength(1);
  });

  it('serves a cold container from one table read, counted as a table hit and not a miss, then from memory', async () => {
    const t = setup();
    await t.ask(t.broker);
    const c = t.container();
    const seen = counting();
    const reads = t.tableCalls.reads;
    expect((await t.ask(c, { scopes: ['a'] }, undefined, seen)).source).toBe('table');
    expect(t.tableCalls.reads).toBe(reads + 1);
    expect(seen.counts.get('TableHits')).toBe(1);
    expect(seen.counts.has('Misses')).toBe(false);
    expect((await t.ask(c)).source).toBe('memory');
  });

  it('goes on as a miss when the table read fails, logged degraded table_bypass and counted TableBypass', async () => {
    const t = setup();
    const failingReads: TokenTable = Object.assign(Object.create(t.parts.store) as TokenTable, {
      read: () => Promise.reject(new UnavailableError('DynamoDB read failed', 'table_unavailable')),
    });
    const c = new TokenBroker({ ...t.parts, store: failingReads, memory: new MemoryTokenCache(10) });
    const seen = counting();
    expect((await t.ask(c, { scopes: ['a'] }, undefined, seen)).source).toBe('endpoint');
    expect(seen.lines.filter((l) => l.message === 'degraded: table bypass')).toEqual([
      {
        level: 'warn',
        message: 'degraded: table bypass',
        fields: expect.objectContaining({ client: 'limitrail', degraded: 'table_bypass', reason: 'table_unavailable' }),
      },
    ]);
    expect(seen.counts.get('TableBypass')).toBe(1);
  });

  it('limits forced refreshes while the table is down to one per FORCE_REFRESH_MIN_INTERVAL_SEC', async () => {
    const t = setup();
    t.setTableDown(true);
    await t.ask(t.broker);
    const rejecting = (token: string) => ({ scopes: ['a'], forceRefresh: true, rejectedTokenSha256: sha256Hex(token) });
    expect((await t.ask(t.broker, rejecting('token-1'))).answer.access_token).toBe('token-2');
    t.advance(1_000);
    await expect(t.ask(t.broker, rejecting('token-2'), undefined, { principal: 'another' })).rejects.toMatchObject({
      reason: 'force_refresh_limited',
      retryAfterSeconds: 29,
    });
    expect(t.fetches).toHaveLength(2);
  });

  it.each([
    {
      entry: { unusable: 'decrypt_failed', unusableDetail: 'InvalidCiphertextException' },
      reason: 'decrypt_failed: InvalidCiphertextException',
      decryptFailures: 1,
    },
    { entry: { unusable: 'malformed_item' }, reason: 'malformed_item', decryptFailures: undefined },
  ] as const)(
    'treats an unusable table item as a miss, logged with reason $reason and counted',
    async ({ entry, reason, decryptFailures }) => {
      const t = setup();
      const unusable: TokenTable = Object.assign(Object.create(t.parts.store) as TokenTable, {
        read: async (): Promise<StoredEntry> => ({ ...entry }),
      });
      const c = new TokenBroker({ ...t.parts, store: unusable, memory: new MemoryTokenCache(10) });
      const seen = counting();
      expect((await t.ask(c, { scopes: ['a'] }, undefined, seen)).source).toBe('endpoint');
      expect(seen.lines.find((l) => l.message === 'cached item unusable, treated as a miss')).toMatchObject({
        level: 'warn',
        fields: { client: 'limitrail', scopes: ['a'], reason },
      });
      expect(seen.counts.get('UnusableItems')).toBe(1);
      expect(seen.counts.get('DecryptFailures')).toBe(decryptFailures);
    },
  );

  it('counts no unusable item for a usable one', async () => {
    const t = setup();
    await t.ask(t.broker);
    const seen = counting();
    expect((await t.ask(t.container(), { scopes: ['a'] }, undefined, seen)).source).toBe('table');
    expect(seen.counts.has('UnusableItems')).toBe(false);
    expect(seen.lines.some((l) => l.message === 'cached item unusable, treated as a miss')).toBe(false);
  });
});

// Containers whose memory holds one key: asking for another drops the first from memory, not from the guard.
describe('a rolled-back table token met on a plain request', () => {
  it('is refused by a container that served the newer token it fetched, once its memory dropped the key', async () => {
    const t = setup();
    const c = containerOf(t, 1);
    await t.ask(c, { scopes: ['a'] });
    const saved = structuredClone([...t.table.items.entries()][0]!);
    t.advance(60_000);
    await t.ask(c, { scopes: ['a'], forceRefresh: true, rejectedTokenSha256: sha256Hex('token-1') });
    t.table.items.set(saved[0], saved[1]);
    await t.ask(c, { scopes: ['b'] }); // drops 'a' from memory
    const again = await t.ask(c, { scopes: ['a'] });
    expect(again.source).toBe('endpoint'); // not from memory: the key was dropped
    expect(again.answer.access_token).not.toBe('token-1');
  });

  it('is refused by a container that served the newer token read from the table', async () => {
    const t = setup();
    await t.ask(t.broker, { scopes: ['a'] });
    const saved = structuredClone([...t.table.items.entries()][0]!);
    t.advance(60_000);
    await t.ask(t.container(), { scopes: ['a'], forceRefresh: true, rejectedTokenSha256: sha256Hex('token-1') });
    const c = containerOf(t, 1);
    expect(await t.ask(c, { scopes: ['a'] })).toMatchObject({ source: 'table', answer: { access_token: 'token-2' } });
    t.table.items.set(saved[0], saved[1]);
    await t.ask(c, { scopes: ['b'] }); // drops 'a' from memory
    const again = await t.ask(c, { scopes: ['a'] });
    expect(again.source).toBe('endpoint'); // not from memory: the key was dropped
    expect(again.answer.access_token).not.toBe('token-1');
  });
});

describe('a token granted beyond the caller’s grants', () => {
  it('is refused with the documented description and logged with the scopes beyond, and stays cached', async () => {
    const t = setup();
    const seen = counting();
    const refused = t.ask(t.broker, { scopes: ['a'] }, new Set(['b']), { log: seen.log });
    await expect(refused).rejects.toMatchObject({
      reason: 'token_scope_beyond_grant',
      message: 'the token for these scopes also carries 1 scope(s) your grants do not cover; ask the platform team',
    });
    expect(seen.lines.find((l) => 'beyondGrant' in l.fields)).toEqual({
      level: 'warn',
      message: "token carries scopes beyond the caller's grants; not handed over",
      fields: expect.objectContaining({ client: 'limitrail', grantedByEndpoint: ['a'], beyondGrant: ['a'] }),
    });
    expect((await t.ask(t.broker, { scopes: ['a'] }, new Set(['a']))).source).toBe('memory');
  });
});

describe('a request sharing a miss started with less time', () => {
  /** A miss started by a request with 1 s, joined by one with 10 s. */
  const joined = async (event?: Record<string, unknown>) => {
    const f = flights();
    const short = f.ask(1_000, event);
    await settle();
    const long = f.ask(10_000, event);
    await settle();
    expect(f.obtains).toHaveLength(1);
    return { f, short, long };
  };

  it.each([
    {
      what: 'a refusal (400)',
      error: () => new InvalidScopeError('the endpoint refused the scope', 'upstream_invalid_scope'),
    },
    { what: 'a bug (not a broker error)', error: () => new TypeError('x is undefined') },
  ])('shares its failure when it is $what, without a miss of its own', async ({ error }) => {
    const { f, long } = await joined();
    f.obtains[0]!.settle(error());
    await settle();
    expect(long.state()).not.toBe('waiting');
    expect(long.state()).not.toHaveProperty('answer');
    expect(f.obtains).toHaveLength(1);
  });

  it('shares a forced refresh refused inside the interval (force_refresh_limited), without a miss of its own', async () => {
    const { f, long } = await joined({ scopes: ['a'], forceRefresh: true, rejectedTokenSha256: sha256Hex('token-1') });
    f.obtains[0]!.settle(forcedRefreshLimited(20, 30));
    await settle();
    expect(long.state()).toEqual({ reason: 'force_refresh_limited' });
    expect(f.obtains).toHaveLength(1);
  });

  it('runs its own miss when the shared one failed with a 500', async () => {
    const { f, long } = await joined();
    f.obtains[0]!.settle(new ConfigurationError('the client secret cannot be read', 'secret_unreadable'));
    await settle();
    expect(f.obtains).toHaveLength(2);
    f.obtains[1]!.settle(f.token('token-2'));
    await settle();
    expect(long.state()).toEqual({ answer: 'token-2' });
  });

  it('runs no miss of its own when its own deadline has come by the time the shared one fails (its timer late)', async () => {
    const { f, long } = await joined();
    await f.advance(10_000, false);
    f.obtains[0]!.settle(new UnavailableError('its time ran out', 'upstream_timeout'));
    await settle();
    expect(long.state()).toEqual({ reason: 'upstream_timeout' });
    expect(f.obtains).toHaveLength(1);
  });

  it('stops at its deadline timer, even if the clock reads a little earlier, and never joins again', async () => {
    const { f, long } = await joined();
    expect(f.sleeps).toHaveLength(1);
    f.sleeps[0]!.wake();
    await settle();
    expect(long.state()).toEqual({ reason: 'lease_wait_timeout' });
    expect(long.description()).toContain('did not arrive before this invocation ran out of time');
    expect(f.sleeps).toHaveLength(1);
  });

  it('does not share a forced refresh of the same caller that reported another token', async () => {
    const f = flights();
    f.ask(10_000, { scopes: ['a'], forceRefresh: true, rejectedTokenSha256: sha256Hex('token-1') });
    f.ask(10_000, { scopes: ['a'], forceRefresh: true, rejectedTokenSha256: sha256Hex('token-2') });
    await settle();
    expect(f.obtains).toHaveLength(2);
  });
});
