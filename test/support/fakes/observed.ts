import { expect } from 'vitest';
import { UnavailableError } from '../../../functions/lib/shared/errors';
import type { Log } from '../../../functions/lib/shared/logger';
import type { MetricName, MetricsSink } from '../../../functions/lib/shared/metrics';

/** A request's log and metrics, kept for a unit test: each warning's fields, and the counts by metric name. */
export const observed = () => {
  const warnings: Record<string, unknown>[] = [];
  const counts = new Map<MetricName, number>();
  const log: Log = {
    child: () => log,
    debug: () => undefined,
    info: () => undefined,
    warn: (_message, fields) => warnings.push(fields ?? {}),
    error: () => undefined,
  };
  const metrics: MetricsSink = {
    count: (name, n = 1) => counts.set(name, (counts.get(name) ?? 0) + n),
    record: () => undefined,
  };
  return { warnings, counts, log, metrics };
};

/** The UnavailableError `pending` rejects with (the test fails if it settles otherwise). */
export const unavailable = async (pending: Promise<unknown>): Promise<UnavailableError> => {
  const err = await pending.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UnavailableError);
  return err as UnavailableError;
};
