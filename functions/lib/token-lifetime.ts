import { toEpochSec } from './clock';

/** A token as the broker keeps it (in memory; in the table its access token is encrypted). */
export interface CachedToken {
  readonly accessToken: string;
  /** Granted scopes, canonical (deduplicated, sorted). */
  readonly scopes: readonly string[];
  readonly issuedAtEpochSec: number;
  readonly expiresAtEpochSec: number;
}

/** What the token function answers on success. */
export interface TokenAnswer {
  access_token: string;
  token_type: 'Bearer';
  /** Remaining lifetime at the moment of the answer (seconds), not the upstream's original figure. */
  expires_in: number;
  expires_at: string;
  scope: string;
  client: string;
}

/**
 * Issue time and expiry of a token whose request was sent at `requestSentAtMs` and answered with
 * `expiresInSec`. The clock starts when the request left, so the broker never believes a token lives longer
 * than it does.
 */
export const lifetimeOf = (requestSentAtMs: number, expiresInSec: number) => {
  const issuedAtEpochSec = toEpochSec(requestSentAtMs);
  return { issuedAtEpochSec, expiresAtEpochSec: issuedAtEpochSec + Math.floor(expiresInSec) };
};

export const remainingSec = (token: CachedToken, nowMs: number): number => token.expiresAtEpochSec - nowMs / 1000;

/**
 * The least remaining lifetime a cached token must have to be served. The caller's `minTtlSec`, but never more
 * than half the token's own lifetime: an endpoint that issues short tokens would otherwise make every request a
 * miss. Always at least one second.
 */
export const requiredRemainingSec = (token: CachedToken, minTtlSec: number): number =>
  Math.max(1, Math.min(minTtlSec, Math.floor((token.expiresAtEpochSec - token.issuedAtEpochSec) / 2)));

/** Whether a cached token may be served to a caller who accepts no less than `minTtlSec` of life. */
export const isServable = (token: CachedToken, nowMs: number, minTtlSec: number): boolean =>
  remainingSec(token, nowMs) >= requiredRemainingSec(token, minTtlSec);

export const toTokenAnswer = (token: CachedToken, clientName: string, nowMs: number): TokenAnswer => ({
  access_token: token.accessToken,
  token_type: 'Bearer',
  expires_in: Math.max(0, Math.floor(remainingSec(token, nowMs))),
  expires_at: new Date(token.expiresAtEpochSec * 1000).toISOString().replace('.000Z', 'Z'),
  scope: token.scopes.join(' '),
  client: clientName,
});
