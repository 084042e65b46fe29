/**
 * The one backoff formula: capped exponential growth with full jitter (AWS Architecture Blog, "Exponential Backoff
 * and Jitter"), used for token request retries (upstream/endpoint-token-provider.ts) and for polling a held lease (cache/lease/table-lease.ts).
 */
export interface BackoffShape {
  /** The cap of the first wait (attempt 0). */
  baseMs: number;
  /** No wait's cap grows beyond this. */
  capMs: number;
  /** The least wait (default 0). */
  floorMs?: number;
}

/** A wait drawn uniformly from [0, min(capMs, baseMs * 2^attempt)), at least `floorMs`; `random` in [0, 1). */
export const fullJitterDelayMs = (attempt: number, random: number, shape: BackoffShape): number =>
  Math.max(shape.floorMs ?? 0, Math.floor(random * Math.min(shape.capMs, shape.baseMs * 2 ** attempt)));
