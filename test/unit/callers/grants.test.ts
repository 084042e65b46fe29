import { describe, expect, it } from 'vitest';
import {
  authorize,
  clientsGrantedTo,
  notGranted,
  principalKeyOf,
  principalMatches,
  refuseRevoked,
  revocationOf,
  samePrincipal,
} from '../../../functions/lib/callers/grants';
import { parseCallerList } from '../../../functions/lib/config/caller-list';
import { parseGrants, parsePrincipal } from '../../../functions/lib/config/grants';
import type { Caller } from '../../../functions/lib/domain/caller';
import type { BrokerError } from '../../../functions/lib/shared/errors';

const clientScopes = new Map([['limitrail', new Set(['a', 'b', 'c'])]]);
const grants = parseGrants(
  JSON.stringify([
    { principal: 'arn:aws:iam::111111111111:role/service/billing', client: 'limitrail', scopes: ['a'] },
    { principal: 'arn:aws:iam::111111111111:role/billing', client: 'limitrail', scopes: ['b'] },
    { principal: '222222222222', client: 'limitrail', scopes: ['c'] },
    { principal: 'arn:aws:iam::333333333333:user/ci', client: 'limitrail', scopes: ['a'] },
    { principal: 'o-abcdef1234', client: 'limitrail', scopes: ['b'] },
  ]),
  clientScopes,
  'BROKER_CALLERS',
);
const caller = (userArn: string, principalOrgId?: string): Caller => ({
  arn: userArn,
  accountId: userArn.split(':')[4]!,
  principalOrgId,
});
const denied = (c: Caller, scopes: string[]) => {
  try {
    authorize(grants, c, 'limitrail', scopes);
  } catch (err) {
    return (err as BrokerError).toOAuth();
  }
  return undefined;
};

describe('caller grants', () => {
  it('lets a session of a granted role have the union of its grants', () => {
    const session = caller('arn:aws:sts::111111111111:assumed-role/billing/i-0abc');
    expect(denied(session, ['a', 'b'])).toBeUndefined();
    expect(denied(session, ['a', 'c'])).toEqual({
      error: 'access_denied',
      status: 403,
      error_description: 'caller "arn:aws:sts::111111111111:assumed-role/billing/i-0abc" has no grant for scope "c"',
    });
  });

  it('does not confuse roles of the same name in other accounts, or other roles', () => {
    expect(denied(caller('arn:aws:sts::999999999999:assumed-role/billing/s'), ['a'])?.error).toBe('access_denied');
    expect(denied(caller('arn:aws:sts::111111111111:assumed-role/billing-admin/s'), ['a'])?.error).toBe(
      'access_denied',
    );
    expect(denied(caller('arn:aws:sts::111111111111:assumed-role/other/s'), ['a'])?.error_description).toContain(
      'no grant for client "limitrail"',
    );
  });

  it('grants everything in an account, a named user, or an organization', () => {
    expect(denied(caller('arn:aws:sts::222222222222:assumed-role/anything/s'), ['c'])).toBeUndefined();
    expect(denied(caller('arn:aws:iam::333333333333:user/ci'), ['a'])).toBeUndefined();
    expect(denied(caller('arn:aws:iam::333333333333:user/other'), ['a'])?.error).toBe('access_denied');
    expect(denied(caller('arn:aws:sts::444444444444:assumed-role/x/s', 'o-abcdef1234'), ['b'])).toBeUndefined();
  });

  it('reads principals', () => {
    expect(parsePrincipal('arn:aws:iam::123456789012:root')).toEqual({ kind: 'account', accountId: '123456789012' });
    expect(parsePrincipal('arn:aws:iam::123456789012:role/a/b/name')).toMatchObject({ kind: 'role', roleName: 'name' });
    expect(parsePrincipal('arn:aws:sts::123456789012:assumed-role/x/y')).toBeUndefined();
    expect(parsePrincipal('*')).toBeUndefined();
    expect(parsePrincipal('12345')).toBeUndefined();
    const role = parsePrincipal('arn:aws:iam::123456789012:role/name')!;
    expect(principalMatches(role, caller('arn:aws:iam::123456789012:role/name'))).toBe(true);
  });

  it.each([
    ['not JSON', '[{', 'not valid JSON'],
    ['an object', '{}', 'JSON array'],
    ['a wildcard principal', '[{"principal":"*","client":"limitrail","scopes":["a"]}]', 'principal must be'],
    ['an unknown client', '[{"principal":"123456789012","client":"x","scopes":["a"]}]', 'client must name'],
    ['a scope the client lacks', '[{"principal":"123456789012","client":"limitrail","scopes":["z"]}]', 'scopes[0]'],
    [
      'an unknown field',
      '[{"principal":"123456789012","client":"limitrail","scopes":["a"],"scope":"a"}]',
      'unknown field',
    ],
  ])('refuses BROKER_CALLERS with %s', (_name, text, fragment) => {
    expect(() => parseGrants(text, clientScopes, 'BROKER_CALLERS')).toThrow(fragment);
  });
});

describe('revoked principals', () => {
  const listRevoking = (...revoked: string[]) =>
    parseCallerList(JSON.stringify({ callers: [], revoked }), clientScopes, 'test', { organizations: false });
  const billingSession = caller('arn:aws:sts::111111111111:assumed-role/billing/i-0abc');
  const otherSession = caller('arn:aws:sts::111111111111:assumed-role/billing/i-0def');

  it('revokes one session exactly, and not the role or its other sessions', () => {
    const list = listRevoking(billingSession.arn);
    expect(revocationOf(list, billingSession)?.text).toBe(billingSession.arn);
    expect(revocationOf(list, otherSession)).toBeUndefined();
    expect(revocationOf(list, caller('arn:aws:sts::111111111111:assumed-role/billing/i-0ab'))).toBeUndefined();
  });

  it('revokes a role with every session of it (whatever its path), and no role of the same name elsewhere', () => {
    const list = listRevoking('arn:aws:iam::111111111111:role/service/billing');
    expect(revocationOf(list, billingSession)).toBeDefined();
    expect(revocationOf(list, otherSession)).toBeDefined();
    expect(revocationOf(list, caller('arn:aws:sts::222222222222:assumed-role/billing/i-0abc'))).toBeUndefined();
    expect(revocationOf(list, caller('arn:aws:sts::111111111111:assumed-role/billing-2/i-0abc'))).toBeUndefined();
  });

  it('revokes a user exactly', () => {
    const list = listRevoking('arn:aws:iam::333333333333:user/ci');
    expect(revocationOf(list, caller('arn:aws:iam::333333333333:user/ci'))).toBeDefined();
    expect(revocationOf(list, caller('arn:aws:iam::333333333333:user/ci2'))).toBeUndefined();
  });

  it('refuses a revoked caller with 403 caller_revoked, whatever its grants, naming the revoked role', () => {
    const refusal = (() => {
      try {
        refuseRevoked(listRevoking('arn:aws:iam::111111111111:role/billing'), billingSession);
      } catch (err) {
        return err as BrokerError;
      }
      return undefined;
    })();
    expect(refusal?.reason).toBe('caller_revoked');
    expect(refusal?.toOAuth()).toEqual({
      error: 'access_denied',
      status: 403,
      error_description:
        'caller "arn:aws:sts::111111111111:assumed-role/billing/i-0abc" is revoked ' +
        '("arn:aws:iam::111111111111:role/billing"); ask the platform team',
    });
    expect(() => refuseRevoked(listRevoking(otherSession.arn), billingSession)).not.toThrow();
  });
});

describe('which grants count', () => {
  const twoClients = parseGrants(
    JSON.stringify([
      { principal: 'arn:aws:iam::111111111111:role/billing', client: 'limitrail', scopes: ['a'] },
      { principal: 'arn:aws:iam::111111111111:role/billing', client: 'reports', scopes: ['b'] },
      { principal: 'arn:aws:iam::111111111111:role/other', client: 'audit', scopes: ['a'] },
    ]),
    new Map([...clientScopes, ['reports', new Set(['a', 'b'])], ['audit', new Set(['a'])]]),
    'BROKER_CALLERS',
  );
  const session = caller('arn:aws:sts::111111111111:assumed-role/billing/i-0abc');

  it('counts only the grants for the client asked for: a scope granted with another client is not granted', () => {
    expect(() => authorize(twoClients, session, 'limitrail', ['b'])).toThrow(
      'caller "arn:aws:sts::111111111111:assumed-role/billing/i-0abc" has no grant for scope "b"',
    );
    expect([...authorize(twoClients, session, 'reports', ['b'])]).toEqual(['b']);
  });

  it("names only the clients of the caller's own grants", () => {
    expect([...clientsGrantedTo(twoClients, session)].sort()).toEqual(['limitrail', 'reports']);
    expect(clientsGrantedTo(twoClients, caller('arn:aws:sts::111111111111:assumed-role/third/s')).size).toBe(0);
  });

  it('names every scope no grant covers, separated by commas', () => {
    expect(denied(caller('arn:aws:iam::333333333333:user/ci'), ['b', 'a', 'c'])?.error_description).toBe(
      'caller "arn:aws:iam::333333333333:user/ci" has no grant for scope "b", "c"',
    );
  });

  it('refuses a caller with no grant at all without naming anything it did not ask for', () => {
    expect(notGranted(caller('arn:aws:iam::333333333333:user/ci')).toOAuth()).toEqual({
      error: 'access_denied',
      status: 403,
      error_description: 'caller "arn:aws:iam::333333333333:user/ci" has no grant',
    });
  });

  it("does not match a role's sessions in another partition, whose accounts are another namespace", () => {
    const role = parsePrincipal('arn:aws:iam::111111111111:role/billing')!;
    expect(principalMatches(role, caller('arn:aws:sts::111111111111:assumed-role/billing/s'))).toBe(true);
    expect(principalMatches(role, caller('arn:aws-us-gov:sts::111111111111:assumed-role/billing/s'))).toBe(false);
    expect(principalMatches(role, caller('arn:aws-cn:sts::111111111111:assumed-role/billing/s'))).toBe(false);
  });
});

describe('one principal (the Function URL caller and the proof; the per-caller budgets)', () => {
  const s = (arn: string, accountId = arn.split(':')[4]!): Caller => ({ arn, accountId, principalOrgId: undefined });

  it('keys a role session on its role, and any other identity on its ARN', () => {
    expect(principalKeyOf(s('arn:aws:sts::111111111111:assumed-role/billing/i-0abc'))).toBe(
      'role:aws:111111111111:billing',
    );
    expect(principalKeyOf(s('arn:aws:iam::333333333333:user/ci'))).toBe('arn:aws:iam::333333333333:user/ci');
  });

  it.each([
    [
      'two sessions of one role',
      'arn:aws:sts::111111111111:assumed-role/billing/a',
      'arn:aws:sts::111111111111:assumed-role/billing/b',
      true,
    ],
    ['one user', 'arn:aws:iam::333333333333:user/ci', 'arn:aws:iam::333333333333:user/ci', true],
    [
      'two roles of one account',
      'arn:aws:sts::111111111111:assumed-role/billing/a',
      'arn:aws:sts::111111111111:assumed-role/other/a',
      false,
    ],
    [
      'one role name in two accounts',
      'arn:aws:sts::111111111111:assumed-role/billing/a',
      'arn:aws:sts::222222222222:assumed-role/billing/a',
      false,
    ],
    ['two users of one account', 'arn:aws:iam::333333333333:user/ci', 'arn:aws:iam::333333333333:user/cd', false],
  ])('%s: %s', (_name, a, b, same) => {
    expect(samePrincipal(s(a), s(b))).toBe(same);
  });

  it('is not one principal when the accounts differ, whatever the ARNs say', () => {
    const arn = 'arn:aws:iam::333333333333:user/ci';
    expect(samePrincipal(s(arn, '333333333333'), s(arn, '444444444444'))).toBe(false);
  });
});

describe('what a revocation says', () => {
  it('names nothing more when the revoked entry is the caller itself', () => {
    const session = caller('arn:aws:sts::111111111111:assumed-role/billing/i-0abc');
    const list = parseCallerList(JSON.stringify({ callers: [], revoked: [session.arn] }), clientScopes, 'test', {
      organizations: false,
    });
    expect(() => refuseRevoked(list, session)).toThrow(
      /^caller "arn:aws:sts::111111111111:assumed-role\/billing\/i-0abc" is revoked; ask the platform team$/,
    );
  });
});
