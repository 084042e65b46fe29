import { setImmediate as nextTick } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { type BrokerDeps, TokenBroker } from '../../../functions/lib/broker/token-broker';
import { TableLease } from '../../../functions/lib/cache/lease/table-lease';
import { MemoryTokenCache } from '../../../functions/lib/cache/memory-cache';
import { loadConfig } from '../../../functions/lib/config/load-config';
import { lifetimeOf } from '../../../functions/lib/domain/cached-token';
import { ClientCredentials } from '../../../functions/lib/domain/client-credentials';
import { DEADLINE_MARGIN_MS, deadlineFor, type HandlerRuntime } from '../../../functions/lib/handlers/invocation';
import {
  createPrewarmHandler,
  PREWARM_CONCURRENCY,
  PREWARM_MIN_BUDGET_MS,
  runPrewarm,
} from '../../../functions/lib/handlers/prewarm-handler';
import type { CredentialSource, TokenProvider } from '../../../functions/lib/ports';
import { UnavailableError } from '../../../functions/lib/shared/errors';
import { createPowertoolsLogger, type Log, Logger } from '../../../functions/lib/shared/logger';
import { EmfWriter } from '../../../functions/lib/shared/metrics';
import { ContainerTelemetry } from '../../../functions/lib/shared/telemetry';
import { FakeTable, silentLog } from '../../support/fakes/lease-world';
import { captureLogLines, stopCapturing } from '../../support/log-capture';

/**
 * The prewarm function near the end of its invocation: the real handler, broker and lease over an in-memory table,
 * a token endpoint that takes `fetchMs` of a fake clock per token, and the Lambda's remaining time as it reports it.
 * A set is started only with PREWARM_MIN_BUDGET_MS left before the deadline (the remaining time less the margin).
 */
const START_MS = Date.parse('2026-11-29T06:00:00Z');
const SETS = [['a'], ['b'], ['c'], ['a', 'b'], ['a', 'c'], ['b', 'c']];
const config = loadConfig({
  CALLER_PROOF_AUDIENCE: 'broker',
  TOKEN_TABLE_NAME: 'tokens',
  TOKEN_KMS_KEY_ID: 'key',
  BROKER_CLIENTS: JSON.stringify({
    limitrail: {
      secretId: 's',
      tokenUrl: 'https://auth.example/connect/token',
      clientId: 'lr_1',
      scopes: ['a', 'b', 'c'],
      prewarm: SETS,
    },
  }),
});

const setup = (fetchMs: number, failing: string[] = []) => {
  let nowMs = START_MS;
  const clock = { nowMs: () => nowMs };
  const table = new FakeTable();
  const fetched: string[] = [];
  const fetcher: TokenProvider = {
    fetch: async (ctx) => {
      fetched.push(ctx.scopes.join(' '));
      await nextTick();
      if (failing.includes(ctx.scopes.join(' ')))
        throw new UnavailableError('the token endpoint failed (HTTP 503)', 'upstream_unavailable');
      nowMs += fetchMs;
      return { accessToken: `token-${fetched.length}`, scopes: [...ctx.scopes], ...lifetimeOf(nowMs, 3600) };
    },
  };
  const secrets: CredentialSource = {
    get: async () => new ClientCredentials('s', 'lr_1', 'secret', 'v1'),
    previous: async () => undefined,
    remember: () => undefined,
  };
  const memory = new MemoryTokenCache(10);
  const lease = new TableLease({
    store: table,
    fetcher,
    memory,
    clock,
    leaseDurationMs: 8000,
    forceRefreshIntervalMs: 0,
  });
  const parts: BrokerDeps = { config, clock, log: silentLog, secrets, store: table, memory, fetcher, lease };
  const runtime = { config, broker: new TokenBroker(parts), clock } as unknown as HandlerRuntime;
  /**
   * One scheduled run with `remainingMs` of the Lambda's time left, as the handler starts it (deadlineFor), read in
   * full: the function itself answers counts only and logs the rest.
   */
  const run = (remainingMs: number, log: Log = silentLog) =>
    runPrewarm(runtime, deadlineFor(clock.nowMs(), { getRemainingTimeInMillis: () => remainingMs }), log);
  return { run, fetched, table, runtime };
};

describe('prewarm near its deadline', () => {
  it('starts no set with less than PREWARM_MIN_BUDGET_MS before the deadline: all skipped, nothing fetched or leased', async () => {
    const { run, fetched, table } = setup(0);
    const summary = await run(DEADLINE_MARGIN_MS + PREWARM_MIN_BUDGET_MS - 1);
    expect(summary).toMatchObject({ refreshed: 0, fresh: 0, inProgress: 0, failed: 0, skipped: SETS.length });
    expect(summary.results.map((r) => [r.scopes, r.outcome, r.reason])).toEqual(
      SETS.map((set) => [set.join(' '), 'skipped', 'out of time in this run']),
    );
    expect(fetched).toEqual([]);
    expect(table.acquisitions).toBe(0);
  });

  it('starts every set with exactly PREWARM_MIN_BUDGET_MS left', async () => {
    const { run, fetched } = setup(0);
    const summary = await run(DEADLINE_MARGIN_MS + PREWARM_MIN_BUDGET_MS);
    expect(summary).toMatchObject({ refreshed: SETS.length, skipped: 0 });
    expect(fetched).toHaveLength(SETS.length);
  });

  it('skips the sets it reaches after time ran low, and finishes the ones it started', async () => {
    // 3 s before the deadline; each token takes 2.5 s: the first PREWARM_CONCURRENCY sets start at once, and when
    // one of them is done less than the budget is left for the rest.
    const { run, fetched } = setup(2_500);
    const summary = await run(DEADLINE_MARGIN_MS + 3_000);
    const started = SETS.slice(0, PREWARM_CONCURRENCY).map((set) => set.join(' '));
    expect(summary).toMatchObject({ refreshed: PREWARM_CONCURRENCY, skipped: SETS.length - PREWARM_CONCURRENCY });
    expect(summary.results.filter((r) => r.outcome === 'refreshed').map((r) => r.scopes)).toEqual(started);
    expect(summary.results.filter((r) => r.outcome === 'skipped').map((r) => r.scopes)).toEqual(
      SETS.slice(PREWARM_CONCURRENCY).map((set) => set.join(' ')),
    );
    expect(fetched.sort()).toEqual([...started].sort());
  });

  it('refreshes every set of a run with time to spare', async () => {
    const { run, fetched } = setup(100);
    expect(await run(15_000)).toMatchObject({ refreshed: SETS.length, skipped: 0, failed: 0 });
    expect(fetched).toHaveLength(SETS.length);
  });
});

describe('a prewarm run', () => {
  it('reports a failing set with its reason and refreshes the others', async () => {
    const { run } = setup(0, ['b']);
    const summary = await run(15_000);
    expect(summary).toMatchObject({ refreshed: SETS.length - 1, failed: 1, skipped: 0 });
    expect(summary.results.find((r) => r.scopes === 'b')).toEqual({
      client: 'limitrail',
      scopes: 'b',
      outcome: 'failed',
      reason: 'upstream_unavailable: the token endpoint failed (HTTP 503)',
    });
  });

  it('logs its summary as "prewarm run": a warning with each set\'s outcome when a set failed, else info', async () => {
    const lines: { level: string; message: string; fields: Record<string, unknown> }[] = [];
    const log: Log = {
      child: () => log,
      debug: () => undefined,
      info: (message, fields = {}) => void lines.push({ level: 'info', message, fields }),
      warn: (message, fields = {}) => void lines.push({ level: 'warn', message, fields }),
      error: (message, fields = {}) => void lines.push({ level: 'error', message, fields }),
    };
    const failing = await setup(0, ['b']).run(15_000, log);
    expect(lines).toEqual([{ level: 'warn', message: 'prewarm run', fields: { ...failing } }]);
    expect(lines[0]!.fields).toMatchObject({
      failed: 1,
      results: expect.arrayContaining([expect.objectContaining({ scopes: 'b', outcome: 'failed' })]),
    });
    lines.length = 0;
    const fine = await setup(0).run(15_000, log);
    expect(lines).toEqual([{ level: 'info', message: 'prewarm run', fields: { ...fine } }]);
    expect(lines[0]!.fields).toMatchObject({ refreshed: SETS.length, failed: 0 });
  });

  it("answers the counts only, and logs its run and writes its metrics under the invocation's request id", async () => {
    const lines = captureLogLines([]);
    try {
      const { runtime } = setup(0);
      const telemetry = new ContainerTelemetry(
        new Logger(createPowertoolsLogger({})),
        new EmfWriter('limitrail-token-broker-ci-prewarm'),
        // A cold start: the first invocation always has a metric to write (ColdStart).
        { initializationType: 'on-demand' },
      );
      const handler = createPrewarmHandler(
        () => ({ ...runtime, telemetry }),
        () => {
          throw new Error('the fallback log is for a misconfigured function only');
        },
      );
      const answer = await handler({}, { awsRequestId: 'p-1', getRemainingTimeInMillis: () => 15_000 });
      expect(answer).toEqual({ refreshed: SETS.length, fresh: 0, inProgress: 0, failed: 0, skipped: 0 });
      const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(parsed.find((l) => l.message === 'prewarm run')).toMatchObject({
        requestId: 'p-1',
        function: 'prewarm',
        refreshed: SETS.length,
      });
      expect(parsed.find((l) => '_aws' in l)).toMatchObject({
        function_request_id: 'p-1',
        FunctionName: 'limitrail-token-broker-ci-prewarm',
        ColdStart: 1,
      });
    } finally {
      stopCapturing(lines);
    }
  });

  it('answers every invocation of a misconfigured function with a bare server_error and its request id', async () => {
    const logged: unknown[] = [];
    const fallback = new Logger(createPowertoolsLogger({ POWERTOOLS_LOG_LEVEL: 'SILENT' }));
    fallback.error = (message, fields) => void logged.push({ message, ...fields });
    const handler = createPrewarmHandler(
      () => loadConfig({}) as never,
      () => fallback,
    );
    expect(await handler({}, { awsRequestId: 'r-1' })).toEqual({
      error: 'server_error',
      error_description:
        'the broker is misconfigured; the platform team can find the cause in its logs (request id r-1)',
      status: 500,
    });
    expect(logged).toEqual([
      {
        message: 'broker configuration invalid',
        requestId: 'r-1',
        reason: 'config_invalid',
        detail: 'invalid configuration: BROKER_CLIENTS is not set',
      },
    ]);
  });
});
