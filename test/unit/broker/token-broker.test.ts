import { setImmediate as nextTick } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { TokenBroker } from '../../../functions/lib/broker/token-broker';
import { TableLease } from '../../../functions/lib/cache/lease/table-lease';
import { MemoryTokenCache } from '../../../functions/lib/cache/memory-cache';
import { loadConfig } from '../../../functions/lib/config/load-config';
import { lifetimeOf } from '../../../functions/lib/domain/cached-token';
import { ClientCredentials } from '../../../functions/lib/domain/client-credentials';
import { parseTokenRequest } from '../../../functions/lib/handlers/read-token-request';
import type { CredentialSource, FetchRequest, TokenProvider } from '../../../functions/lib/ports';
import { UnavailableError } from '../../../functions/lib/shared/errors';
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
  let endpointDown = false;
  const fetcher: TokenProvider = {
    fetch: async (ctx) => {
      fetches.push(ctx);
      await nextTick();
      if (endpointDown) throw new UnavailableError('the token endpoint failed', 'upstream_unavailable');
      return { accessToken: `token-${fetches.length}`, scopes: [...ctx.scopes], ...lifetimeOf(nowMs, 3600) };
    },
  };
  const memory = new MemoryTokenCache(10);
  const lease = new TableLease({
    store,
    fetcher,
    memory,
    clock,
    leaseDurationMs: 8000,
    forceRefreshIntervalMs: 30_000,
    random: () => 0.5,
  });
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
    setEndpointDown: (down: boolean) => (endpointDown = down),
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
  const counting = () => {
    const counts = new Map<MetricName, number>();
    const warnings: Record<string, unknown>[] = [];
    const metrics: MetricsSink = {
      count: (name, n = 1) => counts.set(name, (counts.get(name) ?? 0) + n),
      record: () => {},
    };
    const log: Log = {
      child: () => log,
      debug: () => undefined,
      info: () => undefined,
      warn: (_message, fields) => warnings.push(fields ?? {}),
      error: () => undefined,
    };
    return { counts, warnings, metrics, log };
  };

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
