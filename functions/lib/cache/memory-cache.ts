/**
 * The per-container memory cache of tokens, the first layer of the token path.
 */
import type { CachedToken } from '../domain/cached-token';
import { remainingSec } from '../domain/cached-token';

/**
 * Per-container token cache in front of the table: a warm hit makes no AWS call. Bounded; the least recently
 * used entry goes first, and expired entries are dropped when met.
 */
export class MemoryTokenCache {
  readonly #entries = new Map<string, CachedToken>();

  constructor(private readonly maxEntries: number) {}

  get(cacheKey: string, nowMs: number): CachedToken | undefined {
    const token = this.#entries.get(cacheKey);
    if (!token) return undefined;
    this.#entries.delete(cacheKey);
    if (remainingSec(token, nowMs) <= 0) return undefined;
    this.#entries.set(cacheKey, token); // most recently used goes last
    return token;
  }

  set(cacheKey: string, token: CachedToken): void {
    const current = this.#entries.get(cacheKey);
    if (current && current.expiresAtEpochSec > token.expiresAtEpochSec) return; // never replace with an older token
    this.#entries.delete(cacheKey);
    this.#entries.set(cacheKey, token);
    while (this.#entries.size > this.maxEntries) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
  }

  get size(): number {
    return this.#entries.size;
  }
}
