/**
 * What the token function answers: a token (TokenAnswer) or an OAuth-shaped error (OAuthErrorBody, shared/errors.ts).
 */
import type { OAuthErrorBody } from '../shared/errors';
import { type CachedToken, remainingSec } from './cached-token';

/** What the token function answers on success. */
export interface TokenAnswer {
  access_token: string;
  token_type: 'Bearer';
  /** Remaining lifetime at the moment of the answer (seconds), not the upstream's original figure. */
  expires_in: number;
  expires_at: string;
  scope: string;
  client: string;
  /** Present (true) when the token endpoint failed and a still-valid cached token was answered instead. */
  stale?: true;
}

export type TokenResponse = TokenAnswer | OAuthErrorBody;

export const toTokenAnswer = (token: CachedToken, clientName: string, nowMs: number): TokenAnswer => ({
  access_token: token.accessToken,
  token_type: 'Bearer',
  expires_in: Math.max(0, Math.floor(remainingSec(token, nowMs))),
  expires_at: new Date(token.expiresAtEpochSec * 1000).toISOString().replace('.000Z', 'Z'),
  scope: token.scopes.join(' '),
  client: clientName,
});
