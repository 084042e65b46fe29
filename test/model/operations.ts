/**
 * What a run does, as fast-check values: the fleet (2 to 4 containers, each clock skewed by up to CLOCK_SKEW_MS, each
 * with fast, jittery or slow table calls) and a list of ticks. A tick starts a few operations at the same instant (token requests for a
 * few keys with random minTtlSeconds, forced refreshes with or without a fingerprint, prewarm runs, a container crash,
 * a table outage or flaky table, an endpoint failure mode), then either lets the scheduler run a few steps without
 * moving time (so the next tick lands mid-operation) or lets time pass.
 */
import fc from 'fast-check';
import { CLOCK_SKEW_MS } from '../../functions/lib/cache/lease/lease-rules';
import { ENDPOINT_MODES, type EndpointMode } from './endpoint';
import type { TableLatency } from './model-table';

/** The scope sets (keys) requests ask for. */
export const KEYS = [['a'], ['b']] as const;
export const MAX_CONTAINERS = 4;

export type Operation =
  | { op: 'get'; c: number; key: number; minTtlSec: number; budgetMs: number }
  | { op: 'forced'; c: number; key: number; fingerprint: 'none' | 'last' | 'first'; budgetMs: number }
  | { op: 'prewarm'; c: number; budgetMs: number }
  | { op: 'crash'; c: number }
  | { op: 'table'; c: number | 'all'; state: 'up' | 'down' | 'flaky' }
  | { op: 'endpoint'; mode: EndpointMode };

export interface Tick {
  ops: Operation[];
  /** Steps to run without moving time (then the next tick), or how long time passes. */
  after: { steps: number } | { advanceMs: number };
}

export interface Scenario {
  containers: number;
  /**
   * Containers serve overlapping invocations (Lambda Managed Instances, the local server); otherwise one at a time,
   * as Lambda runs the token and prewarm functions, and a request for a busy container goes to an idle one.
   */
  overlap: boolean;
  skewsMs: number[];
  seed: number;
  /** Per container slot: how long its table calls take. */
  tableLatency: TableLatency[];
  /**
   * REFRESH_LEASE_MS (the default, or shorter than a token request's timeout: holders then overrun their lease) and
   * FORCE_REFRESH_MIN_INTERVAL_SEC (the default, or as long as a token lives: forced refreshes then often meet a spent
   * interval).
   */
  settings: { refreshLeaseMs: number; forceRefreshMinIntervalSec: number };
  ticks: Tick[];
}

/** Budgets of a request (the invocation's time left less the margin): too short to fetch, to wait, and ample. */
export const BUDGETS_MS = [300, 1_500, 10_000, 25_000] as const;
export const MAX_BUDGET_MS = 25_000;

const container = fc.nat(MAX_CONTAINERS - 1);
const key = fc.nat(KEYS.length - 1);
const budgetMs = fc.constantFrom(...BUDGETS_MS);
const minTtlSec = fc.oneof(fc.constantFrom(0, 1, 30, 60, 74, 75, 76, 300, 900), fc.nat(900));

export const operationArb: fc.Arbitrary<Operation> = fc.oneof(
  { weight: 10, arbitrary: fc.record({ op: fc.constant('get' as const), c: container, key, minTtlSec, budgetMs }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('forced' as const),
      c: container,
      key,
      fingerprint: fc.constantFrom('none' as const, 'last' as const, 'first' as const),
      budgetMs,
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('prewarm' as const), c: container, budgetMs }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('crash' as const), c: container }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('table' as const),
      c: fc.oneof(container, fc.constant('all' as const)),
      state: fc.constantFrom('up' as const, 'up' as const, 'down' as const, 'flaky' as const),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('endpoint' as const),
      mode: fc.constantFrom('ok' as const, 'ok' as const, ...ENDPOINT_MODES),
    }),
  },
);

/** Time passing: within a fetch, past a lease, past the forced-refresh interval, past the refresh point. */
const advanceMs = fc.oneof(
  fc.constantFrom(0, 1, 10, 50, 200, 1_000, 3_000, 8_000, 9_100, 30_000, 60_000, 230_000),
  fc.nat(10_000),
);

export const tickArb: fc.Arbitrary<Tick> = fc.record({
  ops: fc.array(operationArb, { minLength: 0, maxLength: 3 }),
  after: fc.oneof(
    { weight: 1, arbitrary: fc.record({ steps: fc.nat(6) }) },
    { weight: 3, arbitrary: fc.record({ advanceMs }) },
  ),
});

const skewMs = fc.oneof(fc.constantFrom(0, CLOCK_SKEW_MS), fc.nat(CLOCK_SKEW_MS));

/** `overlap`: every run with overlapping invocations (true), none (false), or either (undefined). */
export const scenarioArb = (maxTicks = 24, overlap?: boolean): fc.Arbitrary<Scenario> =>
  fc.record({
    containers: fc.integer({ min: 2, max: MAX_CONTAINERS }),
    overlap: overlap === undefined ? fc.boolean() : fc.constant(overlap),
    skewsMs: fc.array(skewMs, { minLength: MAX_CONTAINERS, maxLength: MAX_CONTAINERS }),
    seed: fc.nat(),
    tableLatency: fc.array(fc.constantFrom<TableLatency>('fast', 'fast', 'jittery', 'slow'), {
      minLength: MAX_CONTAINERS,
      maxLength: MAX_CONTAINERS,
    }),
    settings: fc.record({
      refreshLeaseMs: fc.constantFrom(8_000, 8_000, 2_000),
      forceRefreshMinIntervalSec: fc.constantFrom(30, 30, 300),
    }),
    ticks: fc.array(tickArb, { minLength: 1, maxLength: maxTicks }),
  });

export const describeOperation = (o: Operation, name: (c: number) => string): string => {
  switch (o.op) {
    case 'get':
      return `${name(o.c)}: get ${KEYS[o.key]!.join(' ')} minTtl ${o.minTtlSec} s, ${o.budgetMs} ms`;
    case 'forced':
      return `${name(o.c)}: forced refresh of ${KEYS[o.key]!.join(' ')} (${o.fingerprint === 'none' ? 'no fingerprint' : `fingerprint of the ${o.fingerprint} token answered`}), ${o.budgetMs} ms`;
    case 'prewarm':
      return `${name(o.c)}: prewarm run, ${o.budgetMs} ms`;
    case 'crash':
      return `${name(o.c)}: CRASH`;
    case 'table':
      return `table ${o.state} for ${o.c === 'all' ? 'every container' : name(o.c)}`;
    case 'endpoint':
      return `endpoint ${o.mode}`;
  }
};
