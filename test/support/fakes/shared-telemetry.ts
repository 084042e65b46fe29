/**
 * Telemetry that deliberately shares a request's context between invocations, as the handlers did before each
 * invocation got its own (functions/lib/shared/telemetry.ts): for tests of the concurrency tests, which must fail on
 * it. Both wrap the real telemetry and go through the same port the production code uses (`runtime.telemetry`).
 */
import type { Log, LogFields } from '../../../functions/lib/shared/logger';
import type { InvocationMetrics } from '../../../functions/lib/shared/metrics';
import type { Telemetry } from '../../../functions/lib/shared/telemetry';

/** One metrics accumulator for every invocation (the first one's), each flushing it when it ends. */
export const sharedMetrics = (real: Telemetry): Telemetry => {
  let shared: InvocationMetrics | undefined;
  return {
    begin: (context) => {
      const own = real.begin(context);
      shared ??= own.metrics;
      return { log: own.log, metrics: shared };
    },
  };
};

/** One logger whose Lambda context is the latest invocation's, as `addContext` on the process's one logger had it. */
export const sharedLogContext = (real: Telemetry): Telemetry => {
  let latest: Log | undefined;
  const delegate = (fields: LogFields): Log => ({
    child: (more) => delegate({ ...fields, ...more }),
    debug: (message, extra) => latest!.debug(message, { ...fields, ...extra }),
    info: (message, extra) => latest!.info(message, { ...fields, ...extra }),
    warn: (message, extra) => latest!.warn(message, { ...fields, ...extra }),
    error: (message, extra) => latest!.error(message, { ...fields, ...extra }),
  });
  return {
    begin: (context) => {
      const own = real.begin(context);
      latest = own.log;
      return { log: delegate({}), metrics: own.metrics };
    },
  };
};
