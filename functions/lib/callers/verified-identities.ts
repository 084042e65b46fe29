/**
 * The verified-identity cache of one container (VerifiedIdentities): proof key (identity-proof.ts, a hash of what the
 * signature covers) -> the identity STS proved, until the proof's freshness window ends. Least recently used goes
 * first (a hit makes an entry the most recent), and no principal can flush the others: each principal (a role for all
 * of its sessions, callers/grants.ts principalKeyOf) holds at most MAX_PROOFS_PER_PRINCIPAL entries, its own least
 * recently used making room for its next, and a full cache makes room from the principal holding the most entries. So
 * 1000 proofs of one caller cost it its own older entries only, never another caller's.
 */
import type { Caller } from '../domain/caller';
import { principalKeyOf } from './grants';

export const MAX_CACHED_PROOFS = 1_000;
export const MAX_PROOFS_PER_PRINCIPAL = 64;

interface Entry {
  identity: Caller;
  validUntilMs: number;
  principal: string;
}

export class VerifiedIdentities {
  /** Every entry, least recently used first. */
  readonly #entries = new Map<string, Entry>();
  /** Per principal: its entries' keys, least recently used first. */
  readonly #byPrincipal = new Map<string, Map<string, true>>();

  constructor(
    private readonly maxEntries = MAX_CACHED_PROOFS,
    private readonly maxPerPrincipal = MAX_PROOFS_PER_PRINCIPAL,
  ) {}

  get size(): number {
    return this.#entries.size;
  }

  /** The identity a proof proved, while the proof is fresh; a hit makes it the most recently used. */
  get(key: string, nowMs: number): Caller | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.validUntilMs <= nowMs) {
      this.#delete(key);
      return undefined;
    }
    this.#delete(key);
    this.#insert(key, entry);
    return entry.identity;
  }

  /** Keeps what STS proved for a proof, until `validUntilMs`. */
  set(key: string, identity: Caller, validUntilMs: number, nowMs: number): void {
    const principal = principalKeyOf(identity);
    this.#delete(key);
    const own = this.#byPrincipal.get(principal);
    if (own && own.size >= this.maxPerPrincipal) this.#delete(own.keys().next().value as string);
    if (this.#entries.size >= this.maxEntries) {
      for (const [k, e] of this.#entries) if (e.validUntilMs <= nowMs) this.#delete(k);
    }
    if (this.#entries.size >= this.maxEntries) this.#delete(this.#largestHoldersOldest());
    this.#insert(key, { identity, validUntilMs, principal });
  }

  /** Whether the cache holds a fresh entry for `key`, without touching its order (tests, metrics). */
  has(key: string, nowMs: number): boolean {
    const entry = this.#entries.get(key);
    return entry !== undefined && entry.validUntilMs > nowMs;
  }

  /** The least recently used entry of the principal holding the most entries (the first such, on a tie). */
  #largestHoldersOldest(): string {
    let largest: Map<string, true> | undefined;
    for (const keys of this.#byPrincipal.values()) if (!largest || keys.size > largest.size) largest = keys;
    return largest!.keys().next().value as string;
  }

  #insert(key: string, entry: Entry): void {
    this.#entries.set(key, entry);
    const own = this.#byPrincipal.get(entry.principal) ?? new Map<string, true>();
    own.set(key, true);
    this.#byPrincipal.set(entry.principal, own);
  }

  #delete(key: string): void {
    const entry = this.#entries.get(key);
    if (!entry) return;
    this.#entries.delete(key);
    const own = this.#byPrincipal.get(entry.principal)!;
    own.delete(key);
    if (own.size === 0) this.#byPrincipal.delete(entry.principal);
  }
}
