/**
 * The broker's request and answer shapes, and the check of an answer before anything uses it: a token answer
 * (`access_token`, `expires_in`, ...) or an OAuth error (`error`, `error_description`, `status`). Anything else is
 * a `server_error` that names the field, never echoing the answer (it could hold a token).
 */
import { BROKER_ERRORS, TokenBrokerError } from './errors.js';

/** What the client sends (the transports add `identityProof`). */
export interface TokenRequest {
  scopes: string[];
  client?: string;
  minTtlSeconds?: number;
  forceRefresh?: boolean;
  rejectedTokenSha256?: string;
}

export interface TokenAnswer {
  access_token: string;
  token_type: 'Bearer';
  /** Seconds of life the token had when the broker answered. */
  expires_in: number;
  expires_at: string;
  /** What the token endpoint granted (covers what was asked). */
  scope: string;
  client: string;
  /** The endpoint is failing and this cached token has less life left than asked: use it, ask again later. */
  stale?: true;
}

export interface BrokerErrorAnswer {
  error: string;
  error_description: string;
  status: number;
  /** With `temporarily_unavailable`, when the broker knows: no earlier retry will succeed. */
  retryAfterSeconds?: number;
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const invalid = (what: string): TokenBrokerError =>
  new TokenBrokerError(BROKER_ERRORS.serverError, 502, `the token broker answered something unusable: ${what}`);

/** The broker's error as a `TokenBrokerError`; a malformed one is still an error, never a token. */
export const errorOf = (answer: Record<string, unknown>): TokenBrokerError => {
  const error = typeof answer.error === 'string' && answer.error !== '' ? answer.error : BROKER_ERRORS.serverError;
  const status = typeof answer.status === 'number' && Number.isInteger(answer.status) ? answer.status : 500;
  const description = typeof answer.error_description === 'string' ? answer.error_description : '(no description)';
  const retryAfter = answer.retryAfterSeconds;
  const retryAfterSeconds =
    typeof retryAfter === 'number' && Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : undefined;
  return new TokenBrokerError(error, status, description, { retryAfterSeconds });
};

/** A token answer, or throws the broker's error (or `server_error` 502 naming what is wrong with the answer). */
export const tokenAnswerOf = (answer: unknown): TokenAnswer => {
  if (!isRecord(answer)) throw invalid('"answer" must be a JSON object');
  if ('error' in answer) throw errorOf(answer);
  if (typeof answer.access_token !== 'string' || answer.access_token === '')
    throw invalid('"answer" "access_token" must be a non-empty string');
  if (typeof answer.token_type !== 'string' || answer.token_type.toLowerCase() !== 'bearer')
    throw invalid('"answer" "token_type" must be "Bearer"');
  const expiresIn = answer.expires_in;
  if (typeof expiresIn !== 'number' || !Number.isFinite(expiresIn) || expiresIn < 0) {
    throw invalid('"answer" "expires_in" must be a number of seconds, at least 0');
  }
  return answer as unknown as TokenAnswer;
};
