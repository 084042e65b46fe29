/**
 * Cache keys and fingerprints: what makes two tokens interchangeable, hashed; the key of a caller's forced-refresh
 * budget; and the short fingerprint audit lines and logs name a token by.
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

/**
 * The key of a caller's forced-refresh budget item, beside the token items in the table: one per proven principal
 * (a role for all of its sessions; `direct invoke` for every direct invoke without a proof) and upstream client
 * (token URL and client id, what LimitRail rate-limits), whatever the scopes. Hashed like a cache key; the prefix
 * keeps the two kinds of item apart.
 */
export const forceBudgetKeyFor = (principal: string, tokenUrl: string, clientId: string): string =>
  `budget-v1:${sha256Hex(JSON.stringify([principal, tokenUrl, clientId]))}`;
