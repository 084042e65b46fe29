/**
 * The broker's metrics, in CloudWatch Embedded Metric Format through Powertools for AWS Lambda (Metrics): one JSON
 * line per invocation on stdout, which CloudWatch Logs turns into metrics. No API call. Each invocation counts in
 * its own Metrics; the container's EmfWriter writes them out. Namespace LimitrailTokenBroker, one dimension,
 * FunctionName (Powertools' default `service` dimension is cleared): the alarms (infra/alarms.yml) and the
 * dashboard (infra/dashboard.cjs) select on exactly that, and plot only the names listed here (the package test
 * checks both).
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
  /** A table token older than one the container served, or reported rejected (cache/rollback-guard.ts). */
  'RollbackSuspected',
  /** Requests authorized with the last valid callers parameter value: the parameter unreadable or invalid now. */
  'CallersStale',
  /** Requests that met an invalid callers parameter value (served from the last valid one, or refused cold). */
  'CallersParameterInvalid',
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

/** What the token path counts with (Metrics; a fake in unit tests). */
export interface MetricsSink {
  count(name: MetricName, n?: number): void;
  record(name: MetricName, value: number, unit: Unit): void;
}

/** What one invocation counts with, and writes out when it ends (`flush`). */
export interface InvocationMetrics extends MetricsSink {
  flush(nowMs: number): void;
}

/** What an invocation measured: counts, and every sample of each measured value. */
interface Measured {
  counts: ReadonlyMap<MetricName, number>;
  samples: ReadonlyMap<MetricName, { unit: Unit; values: readonly number[] }>;
}

/**
 * The container's EMF output: one Powertools Metrics, namespace LimitrailTokenBroker, dimension FunctionName. It holds
 * nothing between calls: `write` fills and publishes it in one synchronous run, so invocations that overlap in one
 * process (Lambda Managed Instances) never see each other's values in it.
 */
export class EmfWriter {
  readonly #emf = new PowertoolsMetrics({ namespace: METRICS_NAMESPACE });

  /** `functionName`: the Lambda function (AWS_LAMBDA_FUNCTION_NAME), the dimension alarms select on. */
  constructor(functionName = 'local') {
    this.#emf.clearDefaultDimensions();
    this.#emf.setDefaultDimensions({ [METRICS_DIMENSION]: functionName });
  }

  /**
   * Writes one invocation's metrics, stamped `nowMs`, on as few lines as EMF allows, each naming the invocation
   * (`function_request_id`, the log lines' key: a property, not a dimension).
   */
  write({ counts, samples }: Measured, nowMs: number, requestId: string | undefined): void {
    // EMF holds at most 100 values of a metric per line (Powertools would write a line by itself at that point,
    // without the invocation's time): an invocation with more samples writes more lines, each dated.
    const left = [...samples].map(([name, { unit, values }]) => ({ name, unit, values: [...values] }));
    let lineCounts: ReadonlyMap<MetricName, number> | undefined = counts;
    while (lineCounts || left.some((s) => s.values.length > 0)) {
      this.#emf.setTimestamp(Math.round(nowMs));
      if (requestId !== undefined) this.#emf.addMetadata('function_request_id', requestId);
      for (const [name, n] of lineCounts ?? []) this.#emf.addMetric(name, MetricUnit.Count, n);
      for (const { name, unit, values } of left) {
        for (const value of values.splice(0, EMF_MAX_VALUES)) this.#emf.addMetric(name, UNITS[unit], value);
      }
      lineCounts = undefined;
      this.#emf.publishStoredMetrics();
    }
  }
}

/**
 * The metrics of one invocation, created when it starts (shared/telemetry.ts): counted while it runs, written as one
 * EMF line when it ends (`flush`). Never shared: another invocation running in the same process counts in its own.
 */
export class Metrics implements InvocationMetrics {
  readonly #counts = new Map<MetricName, number>();
  readonly #samples = new Map<MetricName, { unit: Unit; values: number[] }>();
  #coldStart: boolean;

  /**
   * `requestId`: the invocation's (its EMF lines name it). `coldStart`: whether this is the first invocation of an
   * on-demand container (the rule Powertools applies to the logs' cold_start key): its EMF line then carries
   * ColdStart 1.
   */
  constructor(
    private readonly writer: EmfWriter = new EmfWriter(),
    private readonly invocation: { requestId?: string | undefined; coldStart?: boolean } = {},
  ) {
    this.#coldStart = invocation.coldStart ?? false;
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

  /** Writes what was measured, stamped `nowMs` (nothing when there is nothing), and starts over. */
  flush(nowMs: number): void {
    if (this.#coldStart) this.count('ColdStart');
    this.#coldStart = false;
    if (this.#counts.size === 0 && this.#samples.size === 0) return;
    const measured = { counts: new Map(this.#counts), samples: new Map(this.#samples) };
    this.#counts.clear();
    this.#samples.clear();
    this.writer.write(measured, nowMs, this.invocation.requestId);
  }
}
