/**
 * BROKER_CALLERS, parsed: who may get which tokens. The grammar of principals is stated in callers/grants.ts, which
 * matches callers against the grants parsed here.
 */
import type { CallerGrant, Principal } from '../domain/caller';
import type { ClientConfig } from '../domain/settings';
import { assertArray, assertKnownKeys, assertRecord, assertScopeTokens, type Fail } from '../shared/assert';
import { invalidConfiguration as fail } from '../shared/errors';
import { normalizeScopes } from '../shared/scopes';

const GRANT_FIELDS = new Set(['principal', 'client', 'scopes']);
const ACCOUNT = /^\d{12}$/;
const ORG = /^o-[a-z0-9]{10,32}$/;
const IAM_ARN =
  /^arn:(aws|aws-cn|aws-us-gov):iam::(\d{12}):(root|role\/(?:[\x21-\x7E]+\/)?([\w+=,.@-]{1,64})|user\/[\x21-\x7E]+)$/;
/** A session of a role, as STS names it: partition, account, role name (no path), session name. */
export const ASSUMED_ROLE_ARN =
  /^arn:(aws|aws-cn|aws-us-gov):sts::(\d{12}):assumed-role\/([\w+=,.@-]{1,64})\/[\w+=,.@-]{1,64}$/;

export const parsePrincipal = (text: string): Principal | undefined => {
  if (ACCOUNT.test(text)) return { kind: 'account', accountId: text };
  if (ORG.test(text)) return { kind: 'organization', orgId: text };
  const m = IAM_ARN.exec(text);
  if (!m) return undefined;
  const [, partition, accountId, resource, roleName] = m as unknown as [
    string,
    string,
    string,
    string,
    string | undefined,
  ];
  if (resource === 'root') return { kind: 'account', accountId };
  if (roleName !== undefined) return { kind: 'role', partition, accountId, roleName, arn: text };
  return { kind: 'user', arn: text };
};

/** Each client's scopes, by client name: what a grant may name. */
export const clientScopesOf = (clients: ReadonlyMap<string, ClientConfig>): ReadonlyMap<string, ReadonlySet<string>> =>
  new Map([...clients].map(([name, client]) => [name, client.scopes]));

export interface GrantOptions {
  /** Whether organization grants are allowed (CALLER_AUTH=invoke-permission only). */
  organizations: boolean;
}

/** Parses BROKER_CALLERS: a JSON array of `{ "principal", "client", "scopes" }`, checked against the clients. */
export const parseGrants = (
  text: string | undefined,
  clientScopes: ReadonlyMap<string, ReadonlySet<string>>,
  envName: string,
  options: GrantOptions = { organizations: true },
): CallerGrant[] => {
  if (text === undefined || text.trim() === '') return [];
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return fail(`${envName} is not valid JSON`);
  }
  return grantsFrom(raw, clientScopes, envName, options);
};

/**
 * A parsed JSON array of grants, checked against the clients (BROKER_CALLERS, or the `callers` of the callers
 * parameter: config/caller-list.ts). `where` names the array in messages; `raise` raises them.
 */
export const grantsFrom = (
  raw: unknown,
  clientScopes: ReadonlyMap<string, ReadonlySet<string>>,
  where: string,
  options: GrantOptions,
  raise: Fail = fail,
): CallerGrant[] => {
  assertArray(raw, where, raise, 'a JSON array of grants', 0);
  return raw.map((entry, i) => {
    const at = `${where}[${i}]`;
    assertRecord(entry, at, raise);
    assertKnownKeys(entry, GRANT_FIELDS, at, raise);
    const { principal, client, scopes } = entry;
    const parsed = typeof principal === 'string' ? parsePrincipal(principal) : undefined;
    if (!parsed) raise(`${at}.principal must be an IAM role or user ARN, an account id or an organization id`);
    if (parsed!.kind === 'organization' && !options.organizations) {
      raise(
        `${at}.principal is an organization: with CALLER_AUTH=grants every caller is identified by an identity proof, ` +
          'which names its account and principal but never its organization; grant the accounts instead',
      );
    }
    const allowed = typeof client === 'string' ? clientScopes.get(client) : undefined;
    if (!allowed) return raise(`${at}.client must name a client in BROKER_CLIENTS`);
    assertArray(scopes, `${at}.scopes`, raise);
    assertScopeTokens(scopes, (j) => `${at}.scopes[${j}]`, raise, "one of the client's scopes", allowed);
    return {
      principal: parsed!,
      principalText: principal as string,
      client: client as string,
      scopes: new Set(normalizeScopes(scopes)),
    };
  });
};
