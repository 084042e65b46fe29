import { describe, expect, it } from 'vitest';
import { parseCallerList, parseRevocation } from '../../../functions/lib/config/caller-list';
import { BrokerError } from '../../../functions/lib/shared/errors';

const clientScopes = new Map([['limitrail', new Set(['a', 'b'])]]);
const LABEL = 'the callers parameter /broker/ci/callers';
const parse = (value: unknown, organizations = false) =>
  parseCallerList(typeof value === 'string' ? value : JSON.stringify(value), clientScopes, LABEL, { organizations });
const problem = (value: unknown) => {
  try {
    parse(value);
  } catch (err) {
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).reason).toBe('config_invalid');
    return (err as BrokerError).message;
  }
  throw new Error('expected a configuration error');
};
const ROLE = 'arn:aws:iam::111111111111:role/billing';
const grant = { principal: ROLE, client: 'limitrail', scopes: ['b', 'a'] };

describe('the callers parameter value', () => {
  it('holds the grants of BROKER_CALLERS and the revoked principals', () => {
    const session = 'arn:aws:sts::111111111111:assumed-role/billing/i-0abc';
    const list = parse({ callers: [grant], revoked: [session, 'arn:aws:iam::111111111111:user/ci', ROLE] });
    expect(list.grants).toEqual([
      {
        principal: expect.objectContaining({ kind: 'role', arn: ROLE }),
        principalText: ROLE,
        client: 'limitrail',
        scopes: new Set(['a', 'b']),
      },
    ]);
    expect(list.revoked.map((r) => [r.kind, r.text])).toEqual([
      ['exact', session],
      ['exact', 'arn:aws:iam::111111111111:user/ci'],
      ['role', ROLE],
    ]);
  });

  it('takes a missing revoked list as none, and an empty callers list as nobody', () => {
    expect(parse({ callers: [grant] }).revoked).toEqual([]);
    expect(parse({ callers: [], revoked: [] })).toEqual({ grants: [], revoked: [] });
  });

  it('revokes a role with a path by its name, as its sessions are named', () => {
    const revocation = parseRevocation('arn:aws:iam::111111111111:role/service/billing');
    expect(revocation).toMatchObject({ kind: 'role', principal: { roleName: 'billing', accountId: '111111111111' } });
  });

  it.each([
    ['an account', '111111111111'],
    ['an account root', 'arn:aws:iam::111111111111:root'],
    ['an organization', 'o-abcdef1234'],
    ['a wildcard', 'arn:aws:iam::111111111111:role/*'],
    ['a role session without its session name', 'arn:aws:sts::111111111111:assumed-role/billing'],
  ])('refuses to revoke %s (only a role, a user or one session, exactly)', (_name, entry) => {
    expect(problem({ callers: [], revoked: [entry] })).toBe(
      `invalid configuration: ${LABEL}: revoked[0] must be an IAM role or user ARN or an assumed-role session ARN ` +
        '(an account or organization is not revoked here: remove its grant)',
    );
  });

  it.each([
    ['not JSON, without quoting it', '{"callers": [hunter2', 'is not valid JSON'],
    ['empty', '   ', 'is empty'],
    ['an array (BROKER_CALLERS pasted as is)', [grant], 'the value must be a JSON object'],
    ['no callers', { revoked: [] }, 'the value has no "callers"'],
    ['an unknown field', { callers: [], revokd: [ROLE] }, 'the value has unknown field "revokd"'],
    ['callers not an array', { callers: grant }, 'callers must be a JSON array of grants'],
    [
      'a grant for an unknown client',
      { callers: [{ ...grant, client: 'other' }] },
      'callers[0].client must name a client',
    ],
    [
      'a scope the client lacks',
      { callers: [{ ...grant, scopes: ['z'] }] },
      "callers[0].scopes[0] must be one of the client's scopes",
    ],
    [
      'an organization grant in grants mode',
      { callers: [{ ...grant, principal: 'o-abcdef1234' }] },
      'callers[0].principal is an organization',
    ],
    ['revoked not an array', { callers: [], revoked: ROLE }, 'revoked must be a JSON array of ARNs'],
    ['a revoked entry not a string', { callers: [], revoked: [42] }, 'revoked[0] must be'],
  ])('refuses a value that is %s, naming the field', (_name, value, fragment) => {
    const message = problem(value);
    expect(message).toContain(`${LABEL}: ${fragment}`);
    expect(message).not.toContain('hunter2');
  });

  it('allows an organization grant with CALLER_AUTH=invoke-permission, as BROKER_CALLERS does', () => {
    const list = parse({ callers: [{ ...grant, principal: 'o-abcdef1234' }] }, true);
    expect(list.grants[0]!.principal).toEqual({ kind: 'organization', orgId: 'o-abcdef1234' });
  });
});
