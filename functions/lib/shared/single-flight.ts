/**
 * One piece of work in flight per key: concurrent callers share its promise, and it is forgotten once it settles,
 * so a failure is never cached (the pattern of middy's processCache).
 */
export class SingleFlight<K, V> {
  readonly #inFlight = new Map<K, Promise<V>>();

  run(key: K, work: () => Promise<V>): Promise<V> {
    let pending = this.#inFlight.get(key);
    if (!pending) {
      pending = work().finally(() => this.#inFlight.delete(key));
      this.#inFlight.set(key, pending);
    }
    return pending;
  }

  has(key: K): boolean {
    return this.#inFlight.has(key);
  }

  /** The work in flight for `key`, to share it without starting any. */
  inFlight(key: K): Promise<V> | undefined {
    return this.#inFlight.get(key);
  }
}
