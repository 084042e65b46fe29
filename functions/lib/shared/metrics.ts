/**
 * The broker's metrics, in CloudWatch Embedded Metric Format through Powertools for AWS Lambda (Metrics): one JSON
 * line per invocation on stdout, which CloudWatch Logs turns into metrics. No API call. Namespace
 * LimitrailTokenBroker, one dimension, FunctionName (Powertools' default `service` dimension is cleared): the
 * alarms (infra/alarms.yml) and the dashboard (infra/dashboard.cjs) select on exactly that, and plot only the
 * names listed here (the package test checks both).
 */
import { MetricUnit, Metrics as PowertoolsMetrics } from '@aws-lambda-powertools/metrics';

export const METRICS_NAMESPACE = 'LimitrailTokenBroker';
export const METRICS_DIMENSION = 'FunctionName';

/** Every metric the broker emits under a fixed name. */
export const METRIC_NAMES = [
  'MemoryHits',
  'TableHits',
  'EndpointFetches',
  'Misses',
  'UpstreamRequests',
  'UpstreamLatency',
  'UpstreamErrors',
  'LeaseWaits',
  'DecryptFailures',
  'UnusableItems',
  'StaleAnswers',
  'TableBypass',
  'SecretFallback',
  /** private_key_jwt: client assertions signed with KMS, KMS Sign latency, and signing failures (any kind). */
  'AssertionsSigned',
  'SigningLatency',
  'SigningErrors',
  'RetriesExhausted',
  'Refusals',
  'IdentityVerifications',
  'IdentityCacheHits',
  'IdentityFailures',
  /** 1 on the first invocation of an on-demand container (Powertools' name for it). */
  'ColdStart',
] as const;

/** Metrics emitted per reason, named `<family>.<reason>` (UpstreamError.upstream_timeout): errors by kind. */
export const METRIC_FAMILIES = ['UpstreamError', 'IdentityFailure', 'SigningError'] as const;

export type MetricName = (typeof METRIC_NAMES)[number] | `${(typeof METRIC_FAMILIES)[number]}.${string}`;

/** The degraded paths: each logs one structured line and counts its metric. */
export type DegradedKind = 'stale_answer' | 'table_bypass' | 'secret_fallback' | 'retries_exhausted';
export const DEGRADED_METRIC: Record<DegradedKind, MetricName> = {
  stale_answer: 'StaleAnswers',
  table_bypass: 'TableBypass',
  secret_fallback: 'SecretFallback',
  retries_exhausted: 'RetriesExhausted',
};

type Unit = 'Count' | 'Milliseconds';
/**
 * Values of one metric we put in one EMF line: below CloudWatch's 100, because Powertools writes a line by itself
 * (undated, and splitting the invocation's other metrics off) the moment a metric reaches 100.
 */
const EMF_MAX_VALUES = 99;
const UNITS: Record<Unit, (typeof MetricUnit)[keyof typeof MetricUnit]> = {
  Count: MetricUnit.Count,
  Milliseconds: MetricUnit.Milliseconds,
};

/** What the token path counts with (Metrics; a fake in unit tests). Writing them out is the handler's (`flush`). */
export interface MetricsSink {
  count(name: MetricName, n?: number): void;
  record(name: MetricName, value: number, unit: Unit): void;
}

/** The metrics of one container: counted during an invocation, written as one EMF line when it ends (`flush`). */
export class Metrics implements MetricsSink {
  readonly #counts = new Map<MetricName, number>();
  readonly #samples = new Map<MetricName, { unit: Unit; values: number[] }>();
  readonly #emf = new PowertoolsMetrics({ namespace: METRICS_NAMESPACE });
  #coldStart: boolean;

  /**
   * `functionName`: the Lambda function (AWS_LAMBDA_FUNCTION_NAME), the dimension alarms select on. `coldStart`:
   * whether this container's first invocation is a cold start (AWS_LAMBDA_INITIALIZATION_TYPE on-demand, the rule
   * Powertools applies to the logs' cold_start key): its EMF line then carries ColdStart 1.
   */
  constructor(functionName = 'local', coldStart = false) {
    this.#emf.clearDefaultDimensions();
    this.#emf.setDefaultDimensions({ [METRICS_DIMENSION]: functionName });
    this.#coldStart = coldStart;
  }

  count(name: MetricName, n = 1): void {
    this.#counts.set(name, (this.#counts.get(name) ?? 0) + n);
  }

  /** A measured value, such as a latency; every sample of the invocation is kept. */
  record(name: MetricName, value: number, unit: Unit): void {
    const entry = this.#samples.get(name) ?? { unit, values: [] };
    entry.values.push(value);
    this.#samples.set(name, entry);
  }

  /** Writes the metrics of this invocation, stamped `nowMs` (nothing when there are none), and starts over. */
  flush(nowMs: number): void {
    if (this.#coldStart) this.count('ColdStart');
    this.#coldStart = false;
    if (this.#counts.size === 0 && this.#samples.size === 0) return;
    // EMF holds at most 100 values of a metric per line (Powertools would write a line by itself at that point,
    // without the invocation's time): an invocation with more samples writes more lines, each dated.
    const samples = [...this.#samples].map(([name, { unit, values }]) => ({ name, unit, values: [...values] }));
    let counts: Map<MetricName, number> | undefined = new Map(this.#counts);
    this.#counts.clear();
    this.#samples.clear();
    while (counts || samples.some((s) => s.values.length > 0)) {
      this.#emf.setTimestamp(Math.round(nowMs));
      for (const [name, n] of counts ?? []) this.#emf.addMetric(name, MetricUnit.Count, n);
      for (const { name, unit, values } of samples) {
        for (const value of values.splice(0, EMF_MAX_VALUES)) this.#emf.addMetric(name, UNITS[unit], value);
      }
      counts = undefined;
      this.#emf.publishStoredMetrics();
    }
  }
}
