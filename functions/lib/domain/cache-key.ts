/**
 * Cache keys and fingerprints: what makes two tokens interchangeable, hashed; and the short fingerprint audit lines
 * and logs name a token by.
 */
import { sha256Hex } from '../shared/hash';
import { normalizeScopes } from '../shared/scopes';

/**
 * The cache key of a token: a hash of what makes two tokens interchangeable — the token URL, the OAuth client
 * id and the canonical scope set. Hashed so keys are fixed-size and reveal nothing but equality.
 */
export const cacheKeyFor = (tokenUrl: string, clientId: string, scopes: readonly string[]): string =>
  `v1:${sha256Hex(JSON.stringify([tokenUrl, clientId, normalizeScopes(scopes)]))}`;

/** Short fingerprint of a token for logs and audit lines: the first 12 hex digits of its SHA-256. */
export const tokenFingerprint = (accessToken: string): string => sha256Hex(accessToken).slice(0, 12);
