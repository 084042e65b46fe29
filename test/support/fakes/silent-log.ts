import type { Log } from '../../../functions/lib/shared/logger';

/** A logger that writes nothing, for unit tests of decisions. */
export const silentLog: Log = {
  child: () => silentLog,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};
