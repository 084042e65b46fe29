/**
 * RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ) — printable ASCII without space,
 * double quote and backslash. The scope parameter is a space-delimited, order-free set.
 */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

export const MAX_SCOPE_TOKEN_CHARS = 256;

export const isScopeToken = (value: unknown): value is string =>
  typeof value === 'string' && value.length <= MAX_SCOPE_TOKEN_CHARS && SCOPE_TOKEN.test(value);

/** Deduplicated and sorted: the canonical form used in cache keys and token requests. */
export const normalizeScopes = (scopes: Iterable<string>): string[] => [...new Set(scopes)].sort();

export const scopeString = (scopes: Iterable<string>): string => normalizeScopes(scopes).join(' ');

/** Splits a granted `scope` parameter (space-delimited, possibly with repeated spaces). */
export const parseScopeString = (value: string): string[] => normalizeScopes(value.split(' ').filter((s) => s !== ''));

/** Scopes of `requested` missing from `granted`. */
export const missingScopes = (requested: readonly string[], granted: readonly string[]): string[] => {
  const have = new Set(granted);
  return requested.filter((s) => !have.has(s));
};
