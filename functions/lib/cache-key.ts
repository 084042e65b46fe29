import { createHash } from 'node:crypto';
import { normalizeScopes } from './scopes';

/**
 * The cache key of a token: a hash of what makes two tokens interchangeable — the token URL, the OAuth client
 * id and the canonical scope set. Hashed so keys are fixed-size and reveal nothing but equality.
 */
export const cacheKeyFor = (tokenUrl: string, clientId: string, scopes: readonly string[]): string =>
  `v1:${createHash('sha256')
    .update(JSON.stringify([tokenUrl, clientId, normalizeScopes(scopes)]))
    .digest('hex')}`;

/** Short fingerprint of a token for logs and audit lines: the first 12 hex digits of its SHA-256. */
export const tokenFingerprint = (accessToken: string): string =>
  createHash('sha256').update(accessToken).digest('hex').slice(0, 12);
