/**
 * The client's decisions, as pure functions of their inputs (time passed in, randomness passed in): the cache key
 * of a request, how long a token may be reused, and how long to wait before retrying `temporarily_unavailable`.
 * TokenBrokerClient (client.ts) does the I/O around them.
 */

/** Defaults: stop reusing a token 60 s before it expires; give up retrying 10 s after a request began. */
export const DEFAULT_MARGIN_SEC = 60;
export const DEFAULT_DEADLINE_MS = 10_000;
/** Backoff between retries: full jitter over 200 ms doubling per attempt, capped at 2 s. */
export const BACKOFF_BASE_MS = 200;
export const BACKOFF_CAP_MS = 2_000;
/** The broker accepts `minTtlSeconds` from 0 to 900. */
export const MAX_MIN_TTL_SEC = 900;

/** Scopes in the broker's canonical form: deduplicated and sorted (the broker treats both the same). */
export const canonicalScopes = (scopes: readonly string[]): string[] => {
  if (!Array.isArray(scopes) || scopes.length === 0)
    throw new TypeError('"scopes" must be a non-empty array of scope strings');
  scopes.forEach((scope, i) => {
    if (typeof scope !== 'string' || scope === '') throw new TypeError(`"scopes[${i}]" must be a non-empty string`);
  });
  return [...new Set(scopes)].sort();
};

/** One cache entry and one flight per client name and set of scopes. */
export const cacheKeyOf = (client: string | undefined, scopes: readonly string[]): string =>
  JSON.stringify([client ?? null, canonicalScopes(scopes)]);

/**
 * When a token stops being reused: `marginSec` before it expires. `expires_in` is counted from the broker's answer,
 * and `askedAtMs` is when the request was sent (a little earlier), so the estimate errs on the safe side.
 */
export const refreshAtMs = (askedAtMs: number, expiresInSec: number, marginSec: number): number =>
  askedAtMs + (expiresInSec - marginSec) * 1000;

/** The least life a token must have left to be worth the broker's answer: the margin (within the broker's bound). */
export const minTtlSecondsFor = (marginSec: number): number => Math.min(Math.ceil(marginSec), MAX_MIN_TTL_SEC);

/**
 * Wait before retry number `attempt` (1 = the first retry): full jitter, `random` in [0, 1). The broker's
 * `retryAfterSeconds`, when it gave one, is a lower bound.
 */
export const backoffDelayMs = (attempt: number, random: number, retryAfterSeconds?: number): number =>
  Math.max(
    (retryAfterSeconds ?? 0) * 1000,
    Math.floor(random * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, attempt - 1))),
  );

/** Whether a wait of `delayMs` from `nowMs` still leaves time for the next attempt before the deadline. */
export const fitsBeforeDeadline = (nowMs: number, delayMs: number, deadlineAtMs: number): boolean =>
  nowMs + delayMs < deadlineAtMs;

export const assertMarginSec = (value: number): number => {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0)
    throw new TypeError('"marginSec" must be a number of seconds, at least 0');
  return value;
};

export const assertDeadlineMs = (value: number): number => {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0)
    throw new TypeError('"deadlineMs" must be a number of milliseconds above 0');
  return value;
};
