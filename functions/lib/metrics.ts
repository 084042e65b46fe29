import type { LogSink } from './logger';

/**
 * Counters in CloudWatch Embedded Metric Format: one JSON line per invocation on stdout, which CloudWatch Logs
 * turns into metrics (namespace LimitrailTokenBroker, dimension service). No API call, no dependency.
 */
export const METRICS_NAMESPACE = 'LimitrailTokenBroker';

export type MetricName =
  | 'MemoryHits'
  | 'TableHits'
  | 'EndpointFetches'
  | 'StaleAnswers'
  | 'TableBypass'
  | 'SecretFallback'
  | 'RetriesExhausted'
  | 'Refusals';

/** The degraded paths: each logs one structured line and counts its metric. */
export type DegradedKind = 'stale_answer' | 'table_bypass' | 'secret_fallback' | 'retries_exhausted';
export const DEGRADED_METRIC: Record<DegradedKind, MetricName> = {
  stale_answer: 'StaleAnswers',
  table_bypass: 'TableBypass',
  secret_fallback: 'SecretFallback',
  retries_exhausted: 'RetriesExhausted',
};

export class Metrics {
  readonly #counts = new Map<MetricName, number>();

  constructor(
    private readonly sink: LogSink,
    private readonly service = 'limitrail-token-broker',
  ) {}

  count(name: MetricName, n = 1): void {
    this.#counts.set(name, (this.#counts.get(name) ?? 0) + n);
  }

  /** Writes the counters of this invocation (nothing when there are none) and starts over. */
  flush(nowMs: number): void {
    if (this.#counts.size === 0) return;
    const values = Object.fromEntries(this.#counts);
    this.#counts.clear();
    this.sink(
      JSON.stringify({
        _aws: {
          Timestamp: nowMs,
          CloudWatchMetrics: [
            {
              Namespace: METRICS_NAMESPACE,
              Dimensions: [['service']],
              Metrics: Object.keys(values).map((Name) => ({ Name, Unit: 'Count' })),
            },
          ],
        },
        service: this.service,
        ...values,
      }),
    );
  }
}
