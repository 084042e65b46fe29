import { describe, expect, it } from 'vitest';
import { parseGrants } from '../../../functions/lib/config/grants';

const clientScopes = new Map([['limitrail', new Set(['a', 'b'])]]);
const refusal = (grants: unknown[], organizations: boolean): string => {
  try {
    parseGrants(JSON.stringify(grants), clientScopes, 'BROKER_CALLERS', { organizations });
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('expected a configuration error');
};

describe('parseGrants: refusals name the grant and the field', () => {
  it('refuses a grant without scopes, naming its scopes', () => {
    expect(refusal([{ principal: '111111111111', client: 'limitrail' }], true)).toBe(
      'invalid configuration: BROKER_CALLERS[0].scopes must be a non-empty array',
    );
    expect(refusal([{ principal: '111111111111', client: 'limitrail', scopes: [] }], true)).toBe(
      'invalid configuration: BROKER_CALLERS[0].scopes must be a non-empty array',
    );
  });

  it('refuses an organization grant in grants mode, and says to grant the accounts instead', () => {
    const organization = [{ principal: 'o-a1b2c3d4e5', client: 'limitrail', scopes: ['a'] }];
    expect(refusal(organization, false)).toBe(
      'invalid configuration: BROKER_CALLERS[0].principal is an organization: with CALLER_AUTH=grants every caller ' +
        'is identified by an identity proof, which names its account and principal but never its organization; ' +
        'grant the accounts instead',
    );
  });
});
