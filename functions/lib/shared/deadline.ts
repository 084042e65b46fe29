/** Waits `ms` on the injected clock's time: node timers in production, the fake clock in tests and the model check. */
export type Sleep = (ms: number) => Promise<void>;

/**
 * `pending`, or the error `late()` makes once `budgetMs` has passed: a request that shares another's work in flight
 * waits for it only within its own deadline (the work goes on for whoever started it). `sleep`: an injected timer;
 * without one, a node timer cleared as soon as `pending` settles.
 */
export const withinDeadline = <T>(
  pending: Promise<T>,
  budgetMs: number,
  late: () => Error,
  sleep?: Sleep,
): Promise<T> => {
  const waitMs = Math.max(0, budgetMs);
  if (sleep) {
    return Promise.race([
      pending,
      sleep(waitMs).then(() => {
        throw late();
      }),
    ]);
  }
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(late()), waitMs);
  });
  return Promise.race([pending, timeout]).finally(() => clearTimeout(timer));
};
