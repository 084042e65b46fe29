import { setImmediate as nextTick } from 'node:timers/promises';
import { expect } from 'vitest';
import { FORCE_REFRESH_LIMITED } from '../../../functions/lib/cache/lease/forced-refresh';
import { TableLease } from '../../../functions/lib/cache/lease/table-lease';
import { MemoryTokenCache } from '../../../functions/lib/cache/memory-cache';
import { type CachedToken, isServable, lifetimeOf } from '../../../functions/lib/domain/cached-token';
import type { ClientConfig } from '../../../functions/lib/domain/settings';
import type { KeyedRequest } from '../../../functions/lib/domain/token-request';
import type { TokenProvider, TokenTable } from '../../../functions/lib/ports';
import { UnavailableError } from '../../../functions/lib/shared/errors';
import { sha256Hex } from '../../../functions/lib/shared/hash';
import { FakeTable } from './fake-table';
import { silentLog } from './silent-log';

/**
 * The lease protocol against an in-memory table whose conditional writes evaluate DynamoTokenTable's named conditions, with a fake clock that sleeping moves: waiting times are measured exactly, not timed.
 */
export { FakeTable } from './fake-table';
export { silentLog } from './silent-log';

export const LEASE_MS = 8_000;
export const INTERVAL_MS = 30_000;
export const KEY = 'v1:key';
export const START_MS = Date.parse('2026-11-29T06:00:00Z');

/** One world: a table, a clock, a token endpoint that counts requests; containers share the first three. */
export const world = () => {
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
  /**
   * A container: its own lease protocol and memory; the table, clock and (unless given) endpoint are shared. `store`:
   * another view of the table (a test's wrapper around it).
   */
  const container = (ownFetcher: TokenProvider = fetcher, store: TokenTable = table) =>
    new TableLease({
      store,
      fetcher: ownFetcher,
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
    tokenUrl: 'https://auth.example/connect/token',
    clientId: 'lr_1',
    auth: { method: 'client_secret_post', secretId: 'secret' },
    tokenParams: {},
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
    log: silentLog,
    keyFields: {},
    degraded: () => undefined,
    ...over,
  });
  /** A forced refresh, as the broker builds it: with a fingerprint it accepts any other token, without one none. */
  const forced = (rejected?: CachedToken) =>
    request({
      forceRefresh: true,
      rejectedTokenSha256: rejected && sha256Hex(rejected.accessToken),
      accept: rejected
        ? (token, atMs) => isServable(token, atMs, 60) && token.accessToken !== rejected.accessToken
        : () => false,
    });
  const seed = (ageSec: number): CachedToken => {
    const token = { accessToken: 'token-0', scopes: ['a'], ...lifetimeOf(nowMs - ageSec * 1000, 3600) };
    table.items.set(KEY, { token });
    return token;
  };
  const refusal = async (pending: Promise<unknown>) => {
    const err = await pending.then(
      () => undefined,
      (e: unknown) => e,
    );
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
