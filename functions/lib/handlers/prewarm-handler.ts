/**
 * The prewarm function: on a schedule, refreshes every configured scope set that is missing or past its refresh
 * point, through the same lease as the token function, a few at a time, within the invocation. It answers counts
 * only (PrewarmCounts: no client name, scope set or secret id, since whoever may invoke it reads the answer); what
 * each set did, and why one failed, goes to its log line (`prewarm run`), never a token.
 */

import type { BrokerConfig, ClientConfig } from '../domain/settings';
import type { PrewarmOutcome } from '../ports';
import { errorLogFields, type OAuthErrorBody } from '../shared/errors';
import type { Log, Logger } from '../shared/logger';
import type { MetricsSink } from '../shared/metrics';
import { deadlineFor, type HandlerRuntime, type InvocationContext, initRuntime } from './invocation';

/** What one prewarm run did for one scope set. */
export interface PrewarmResult {
  client: string;
  scopes: string;
  outcome: PrewarmOutcome | 'failed' | 'skipped';
  reason?: string;
}

/** What the prewarm function answers: how many sets ended how, nothing about the configuration. */
export interface PrewarmCounts {
  refreshed: number;
  fresh: number;
  inProgress: number;
  failed: number;
  skipped: number;
}

/** What a run logs: the counts and what each set did (names, scopes, failure reasons). */
export interface PrewarmSummary extends PrewarmCounts {
  results: PrewarmResult[];
}

/** Scope sets refreshed at the same time. */
export const PREWARM_CONCURRENCY = 4;
/** A set is not started with less time than this left: the run ends inside its invocation. */
export const PREWARM_MIN_BUDGET_MS = 1_000;

export const prewarmSets = (config: BrokerConfig): { client: ClientConfig; scopes: readonly string[] }[] =>
  [...config.clients.values()].flatMap((client) => client.prewarm.map((scopes) => ({ client, scopes })));

const summarize = (results: PrewarmResult[]): PrewarmSummary => {
  const count = (outcome: PrewarmResult['outcome']) => results.filter((r) => r.outcome === outcome).length;
  return {
    refreshed: count('refreshed'),
    fresh: count('fresh'),
    inProgress: count('in_progress'),
    failed: count('failed'),
    skipped: count('skipped'),
    results,
  };
};

/** Refreshes every configured prewarm set that is missing or past its refresh point; one failure stops no other. */
export const runPrewarm = async (
  runtime: HandlerRuntime,
  deadlineMs: number,
  log: Log,
  metrics?: MetricsSink,
): Promise<PrewarmSummary> => {
  const queue = prewarmSets(runtime.config);
  const results: PrewarmResult[] = [];
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const { client, scopes } = next;
      const result: PrewarmResult = { client: client.name, scopes: scopes.join(' '), outcome: 'skipped' };
      results.push(result);
      if (deadlineMs - runtime.clock.nowMs() < PREWARM_MIN_BUDGET_MS) {
        result.reason = 'out of time in this run';
        continue;
      }
      try {
        result.outcome = await runtime.broker.prewarm(client, scopes, { deadlineMs, log, metrics });
      } catch (err) {
        result.outcome = 'failed';
        const { reason, detail } = errorLogFields(err);
        result.reason = `${reason}: ${detail}`;
      }
    }
  };
  await Promise.all(Array.from({ length: PREWARM_CONCURRENCY }, worker));
  const summary = summarize(results);
  log[summary.failed > 0 ? 'warn' : 'info']('prewarm run', { ...summary });
  return summary;
};

/** The counts of a run, as the function answers them. */
export const countsOf = ({ refreshed, fresh, inProgress, failed, skipped }: PrewarmSummary): PrewarmCounts => ({
  refreshed,
  fresh,
  inProgress,
  failed,
  skipped,
});

/**
 * The prewarm function, triggered by an EventBridge schedule. Logs its summary and answers its counts only; never
 * throws.
 */
export const createPrewarmHandler = (makeRuntime: () => HandlerRuntime, fallbackLog: () => Logger) => {
  const runtimeFor = initRuntime(makeRuntime, fallbackLog);
  return async (_event: unknown, context?: InvocationContext): Promise<PrewarmCounts | OAuthErrorBody> => {
    const built = runtimeFor(context?.awsRequestId);
    if ('error' in built) return built.error;
    const { runtime } = built;
    const telemetry = runtime.telemetry.begin(context);
    const log = telemetry.log.child({ requestId: context?.awsRequestId, function: 'prewarm' });
    try {
      return countsOf(await runPrewarm(runtime, deadlineFor(runtime.clock.nowMs(), context), log, telemetry.metrics));
    } finally {
      telemetry.metrics.flush(runtime.clock.nowMs());
    }
  };
};
