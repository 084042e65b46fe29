/**
 * BROKER_CALLERS, parsed: who may get which tokens. The grammar of principals is stated in callers/grants.ts, which
 * matches callers against the grants parsed here.
 */
import type { CallerGrant, Principal } from '../domain/caller';
import { assertArray, assertKnownKeys, assertRecord, assertScopeTokens } from '../shared/assert';
import { invalidConfiguration as fail } from '../shared/errors';
import { normalizeScopes } from '../shared/scopes';

const GRANT_FIELDS = new Set(['principal', 'client', 'scopes']);
const ACCOUNT = /^\d{12}$/;
const ORG = /^o-[a-z0-9]{10,32}$/;
const IAM_ARN =
  /^arn:(aws|aws-cn|aws-us-gov):iam::(\d{12}):(root|role\/(?:[\x21-\x7E]+\/)?([\w+=,.@-]{1,64})|user\/[\x21-\x7E]+)$/;

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

/** Parses BROKER_CALLERS: a JSON array of `{ "principal", "client", "scopes" }`, checked against the clients. */
export const parseGrants = (
  text: string | undefined,
  clientScopes: ReadonlyMap<string, ReadonlySet<string>>,
  envName: string,
  options: { organizations: boolean } = { organizations: true },
): CallerGrant[] => {
  if (text === undefined || text.trim() === '') return [];
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return fail(`${envName} is not valid JSON`);
  }
  assertArray(raw, envName, fail, 'a JSON array of grants', 0);
  return raw.map((entry, i) => {
    const where = `${envName}[${i}]`;
    assertRecord(entry, where, fail);
    assertKnownKeys(entry, GRANT_FIELDS, where, fail);
    const { principal, client, scopes } = entry;
    const parsed = typeof principal === 'string' ? parsePrincipal(principal) : undefined;
    if (!parsed) fail(`${where}.principal must be an IAM role or user ARN, an account id or an organization id`);
    if (parsed!.kind === 'organization' && !options.organizations) {
      fail(
        `${where}.principal is an organization: with CALLER_AUTH=grants every caller is identified by an identity proof, ` +
          'which names its account and principal but never its organization; grant the accounts instead',
      );
    }
    const allowed = typeof client === 'string' ? clientScopes.get(client) : undefined;
    if (!allowed) return fail(`${where}.client must name a client in BROKER_CLIENTS`);
    assertArray(scopes, `${where}.scopes`, fail);
    assertScopeTokens(scopes, (j) => `${where}.scopes[${j}]`, fail, "one of the client's scopes", allowed);
    return {
      principal: parsed!,
      principalText: principal as string,
      client: client as string,
      scopes: new Set(normalizeScopes(scopes)),
    };
  });
};
