import { describe, expect, it } from 'vitest';
import {
  isScopeToken,
  MAX_SCOPE_TOKEN_CHARS,
  missingScopes,
  parseScopeString,
  scopeString,
} from '../../../functions/lib/shared/scopes';

describe('scope tokens (RFC 6749 section 3.3)', () => {
  it('accepts printable ASCII without space, quote and backslash, up to MAX_SCOPE_TOKEN_CHARS characters', () => {
    expect(isScopeToken('limitrail.read')).toBe(true);
    expect(isScopeToken('a'.repeat(MAX_SCOPE_TOKEN_CHARS))).toBe(true);
    expect(isScopeToken('a'.repeat(MAX_SCOPE_TOKEN_CHARS + 1))).toBe(false);
    for (const bad of ['', 'a b', 'a"b', 'a\\b', 'é', 'a\nb', 42, undefined]) expect(isScopeToken(bad)).toBe(false);
  });
});

describe('scope strings', () => {
  it('parses a granted scope with repeated, leading and trailing spaces into the canonical sorted set', () => {
    expect(parseScopeString('  write  read read ')).toEqual(['read', 'write']);
    expect(parseScopeString('')).toEqual([]);
    expect(parseScopeString('   ')).toEqual([]);
  });

  it('writes the canonical form: deduplicated, sorted, one space apart', () => {
    expect(scopeString(['write', 'read', 'write'])).toBe('read write');
  });

  it('names the requested scopes missing from a grant', () => {
    expect(missingScopes(['read', 'write', 'admin'], ['write'])).toEqual(['read', 'admin']);
    expect(missingScopes(['read'], ['read', 'write'])).toEqual([]);
  });
});
