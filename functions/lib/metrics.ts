import type { LogSink } from './logger';

/**
 * Counters in CloudWatch Embedded Metric Format: one JSON line per invocation on stdout, which CloudWatch Logs
 * turns into metrics (namespace LimitrailTokenBroker, dimension FunctionName). No API call, no dependency.
 */
export const METRICS_NAMESPACE = 'LimitrailTokenBroker';

export type MetricName =
  | 'MemoryHits'
  | 'TableHits'
  | 'EndpointFetches'
  | 'Misses'
  | 'UpstreamRequests'
  | 'UpstreamLatency'
  | 'UpstreamErrors'
  | `UpstreamError.${string}`
  | 'LeaseWaits'
  | 'DecryptFailures'
  | 'UnusableItems'
  | 'StaleAnswers'
  | 'TableBypass'
  | 'SecretFallback'
  | 'RetriesExhausted'
  | 'Refusals'
  | 'IdentityVerifications'
  | 'IdentityCacheHits'
  | 'IdentityFailures'
  | `IdentityFailure.${string}`;

/** The degraded paths: each logs one structured line and counts its metric. */
export type DegradedKind = 'stale_answer' | 'table_bypass' | 'secret_fallback' | 'retries_exhausted';
export const DEGRADED_METRIC: Record<DegradedKind, MetricName> = {
  stale_answer: 'StaleAnswers',
  table_bypass: 'TableBypass',
  secret_fallback: 'SecretFallback',
  retries_exhausted: 'RetriesExhausted',
};

type Unit = 'Count' | 'Milliseconds';

export class Metrics {
  readonly #counts = new Map<MetricName, number>();
  readonly #samples = new Map<MetricName, { unit: Unit; values: number[] }>();

  /** `functionName`: the Lambda function (AWS_LAMBDA_FUNCTION_NAME), the dimension alarms select on. */
  constructor(
    private readonly sink: LogSink,
    private readonly functionName = 'local',
  ) {}

  count(name: MetricName, n = 1): void {
    this.#counts.set(name, (this.#counts.get(name) ?? 0) + n);
  }

  /** A measured value, such as a latency; every sample of the invocation is kept. */
  record(name: MetricName, value: number, unit: Unit): void {
    const entry = this.#samples.get(name) ?? { unit, values: [] };
    entry.values.push(value);
    this.#samples.set(name, entry);
  }

  /** Writes the metrics of this invocation (nothing when there are none) and starts over. */
  flush(nowMs: number): void {
    if (this.#counts.size === 0 && this.#samples.size === 0) return;
    const units: Record<string, Unit> = {};
    const values: Record<string, number | number[]> = {};
    for (const [name, n] of this.#counts) [units[name], values[name]] = ['Count', n];
    for (const [name, { unit, values: v }] of this.#samples) [units[name], values[name]] = [unit, v.length === 1 ? v[0]! : v];
    this.#counts.clear();
    this.#samples.clear();
    this.sink(
      JSON.stringify({
        _aws: {
          Timestamp: nowMs,
          CloudWatchMetrics: [
            {
              Namespace: METRICS_NAMESPACE,
              Dimensions: [['FunctionName']],
              Metrics: Object.keys(values).map((Name) => ({ Name, Unit: units[Name] })),
            },
          ],
        },
        FunctionName: this.functionName,
        ...values,
      }),
    );
  }
}
