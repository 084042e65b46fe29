/**
 * Cache keys and fingerprints: what makes two tokens interchangeable, hashed; the key of a caller's forced-refresh
 * budget; and the short fingerprint audit lines and logs name a token by.
 */
import { sha256Hex } from '../shared/hash';
import { normalizeScopes } from '../shared/scopes';
import type { TokenParams } from './settings';

/**
 * The cache key of a token: a hash of what makes two tokens interchangeable — the token URL, the OAuth client
 * id, the canonical scope set and the client's token parameters (`audience`, `resource`), which shape the token as
 * much as its scopes do. Hashed so keys are fixed-size and reveal nothing but equality.
 *
 * A client without token parameters keeps the key it had before they existed (three parts), so a deploy that
 * introduces them leaves every cached token where it is; a client with them adds a fourth part, so two clients that
 * differ only in them never share a token.
 */
export const cacheKeyFor = (
  tokenUrl: string,
  clientId: string,
  scopes: readonly string[],
  tokenParams: TokenParams = {},
): string => {
  const parts: unknown[] = [tokenUrl, clientId, normalizeScopes(scopes)];
  const resource = [...new Set(tokenParams.resource ?? [])].sort();
  if (tokenParams.audience !== undefined || resource.length > 0)
    parts.push({ audience: tokenParams.audience ?? null, resource });
  return `v1:${sha256Hex(JSON.stringify(parts))}`;
};

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
