/**
 * The callers parameter's value (BROKER_CALLERS_PARAMETER, an SSM String parameter holding JSON), parsed:
 *
 *   { "callers": [ grants, exactly as in BROKER_CALLERS ], "revoked": [ ARNs ] }
 *
 * `revoked` (optional, default none) lists principals refused whatever their grants say, each matched exactly: an IAM
 * role ARN (the role and every session of it), an IAM user ARN, or one assumed-role session ARN
 * (`arn:aws:sts::123456789012:assumed-role/billing/i-0abc`). An account, `:root` or an organization is not a
 * principal one revokes here: remove its grant. Read at run time (callers/ssm-caller-directory.ts), so a problem is
 * a ConfigurationError naming the field, never quoting the value.
 */
import type { CallerList, Revocation } from '../domain/caller';
import { assertArray, assertKnownKeys, assertRecord, type Fail } from '../shared/assert';
import { invalidConfiguration } from '../shared/errors';
import { ASSUMED_ROLE_ARN, type GrantOptions, grantsFrom, parsePrincipal } from './grants';

const FIELDS = new Set(['callers', 'revoked']);

/** One `revoked` entry, or undefined when it is not a role, user or assumed-role session ARN. */
export const parseRevocation = (text: string): Revocation | undefined => {
  if (ASSUMED_ROLE_ARN.test(text)) return { kind: 'exact', arn: text, text };
  const principal = parsePrincipal(text);
  if (principal?.kind === 'role') return { kind: 'role', principal, text };
  if (principal?.kind === 'user') return { kind: 'exact', arn: text, text };
  return undefined;
};

/** Parses the parameter's value; `label` starts every message (`the callers parameter "/broker/ci/callers"`). */
export const parseCallerList = (
  text: string | undefined,
  clientScopes: ReadonlyMap<string, ReadonlySet<string>>,
  label: string,
  options: GrantOptions,
): CallerList => {
  const fail: Fail = (message) => invalidConfiguration(`${label}: ${message}`);
  if (text === undefined || text.trim() === '') return fail('is empty');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return fail('is not valid JSON'); // the parser's message quotes the value: not passed on
  }
  assertRecord(raw, 'the value', fail, 'a JSON object { "callers": [...], "revoked": [...] }');
  assertKnownKeys(raw, FIELDS, 'the value', fail);
  if (raw.callers === undefined) fail('the value has no "callers" (a JSON array of grants, [] for none)');
  const grants = grantsFrom(raw.callers, clientScopes, 'callers', options, fail);
  const entries = raw.revoked ?? [];
  assertArray(entries, 'revoked', fail, 'a JSON array of ARNs', 0);
  const revoked = entries.map((entry, i) => {
    const parsed = typeof entry === 'string' ? parseRevocation(entry) : undefined;
    return (
      parsed ??
      fail(
        `revoked[${i}] must be an IAM role or user ARN or an assumed-role session ARN ` +
          '(an account or organization is not revoked here: remove its grant)',
      )
    );
  });
  return { grants, revoked };
};
