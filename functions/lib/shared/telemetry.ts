/**
 * Each invocation's own log context and metrics. One Node process may serve several invocations at once (Lambda
 * Managed Instances run one process for many concurrent requests), so nothing about a request is kept where another
 * could see it: every invocation gets a child logger carrying its Lambda context (function_request_id, ...) and a
 * metrics accumulator of its own, written out when it ends. What the container keeps is the container's: the
 * Powertools logger, the EMF writer, and whether its first invocation is still to come (cold start).
 *
 * Powertools (2.36) scopes its own stores to the invocation only when the Lambda runtime provides its InvokeStore
 * (AWS_LAMBDA_MAX_CONCURRENCY set, on Managed Instances); this works the same with or without it, on a local runner
 * and in tests too.
 */
import type { Context } from 'aws-lambda';
import { type Log, type Logger, lambdaContextFields } from './logger';
import { type EmfWriter, type InvocationMetrics, Metrics } from './metrics';

/** What one invocation logs and counts with: its own, never another invocation's. */
export interface InvocationTelemetry {
  /** Lines carry this invocation's Lambda context. */
  log: Log;
  /** Counts of this invocation only, flushed (EMF) when it ends. */
  metrics: InvocationMetrics;
}

/** Opens the telemetry of each invocation (the port the handlers use; ContainerTelemetry in Lambda). */
export interface Telemetry {
  begin(context: Partial<Context> | undefined): InvocationTelemetry;
}

/** The function's Lambda settings (the variables Lambda sets), for a context that lacks them (a local runner's). */
export interface FunctionSettings {
  functionName?: string | undefined;
  functionVersion?: string | undefined;
  memoryLimitInMB?: string | undefined;
  /** AWS_LAMBDA_INITIALIZATION_TYPE: only an on-demand container has a cold start (Powertools' rule). */
  initializationType?: string | undefined;
}

export const functionSettingsFromEnv = (env: NodeJS.ProcessEnv): FunctionSettings => ({
  functionName: env.AWS_LAMBDA_FUNCTION_NAME,
  functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
  memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
  initializationType: env.AWS_LAMBDA_INITIALIZATION_TYPE,
});

/** The container's telemetry: hands each invocation a fresh logger context and metrics accumulator. */
export class ContainerTelemetry implements Telemetry {
  /** True until the first invocation of an on-demand container has begun: its lines and metrics say cold start. */
  #coldStartPending: boolean;

  constructor(
    private readonly log: Logger,
    private readonly emf: EmfWriter,
    private readonly settings: FunctionSettings = {},
  ) {
    this.#coldStartPending = settings.initializationType === 'on-demand';
  }

  begin(context: Partial<Context> | undefined = {}): InvocationTelemetry {
    const coldStart = this.#coldStartPending;
    this.#coldStartPending = false;
    const { functionName, functionVersion, memoryLimitInMB } = this.settings;
    const lambda = { functionName, functionVersion, memoryLimitInMB, ...context };
    return {
      log: this.log.child(lambdaContextFields(lambda, coldStart)),
      metrics: new Metrics(this.emf, { requestId: context.awsRequestId, coldStart }),
    };
  }
}
