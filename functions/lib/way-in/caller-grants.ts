/**
 * Who may get which tokens (BROKER_CALLERS), on either way in: a caller proven by its identity proof (or, in
 * invoke-permission mode, a Function URL caller AWS verified). A grant names a principal, a client and the scopes
 * that principal may request with it. Principals:
 *   - an IAM role ARN `arn:aws:iam::123456789012:role/billing` (any path): the role itself and every session of
 *     it, `arn:aws:sts::123456789012:assumed-role/billing/<session>`;
 *   - an IAM user ARN `arn:aws:iam::123456789012:user/ci`: that user;
 *   - an account, `123456789012` or `arn:aws:iam::123456789012:root`: every principal in it;
 *   - an organization id `o-a1b2c3d4e5`: every principal of the organization, as the Function URL's
 *     requestContext names it (principalOrgId). Only with CALLER_AUTH=invoke-permission and only for Function URL
 *     calls without a proof: an STS identity proof names no organization, so in grants mode an organization
 *     grant is refused when the configuration is loaded.
 * The scopes a caller may request with a client are the union of its matching grants for that client.
 */
import { assertArray, assertKnownKeys, assertRecord, assertScopeTokens } from '../shared/assert';
import { AccessDeniedError, invalidConfiguration as fail, quote } from '../shared/errors';
import { normalizeScopes } from '../shared/scopes';

const GRANT_FIELDS = new Set(['principal', 'client', 'scopes']);

export type Principal =
  | { kind: 'account'; accountId: string }
  | { kind: 'organization'; orgId: string }
  | { kind: 'role'; partition: string; accountId: string; roleName: string; arn: string }
  | { kind: 'user'; arn: string };

export interface Grant {
  principal: Principal;
  /** As written in BROKER_CALLERS, for logs and messages. */
  principalText: string;
  client: string;
  scopes: ReadonlySet<string>;
}

/** The identity AWS verified for a Function URL call (requestContext.authorizer.iam). */
export interface CallerIdentity {
  userArn: string;
  accountId: string;
  principalOrgId: string | undefined;
}

const ACCOUNT = /^\d{12}$/;
const ORG = /^o-[a-z0-9]{10,32}$/;
const IAM_ARN =
  /^arn:(aws|aws-cn|aws-us-gov):iam::(\d{12}):(root|role\/(?:[\x21-\x7E]+\/)?([\w+=,.@-]{1,64})|user\/[\x21-\x7E]+)$/;
const ASSUMED_ROLE = /^arn:(aws|aws-cn|aws-us-gov):sts::(\d{12}):assumed-role\/([\w+=,.@-]{1,64})\/[\w+=,.@-]{1,64}$/;

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

export const principalMatches = (principal: Principal, caller: CallerIdentity): boolean => {
  switch (principal.kind) {
    case 'account':
      return caller.accountId === principal.accountId;
    case 'organization':
      return caller.principalOrgId === principal.orgId;
    case 'user':
      return caller.userArn === principal.arn;
    case 'role': {
      if (caller.userArn === principal.arn) return true;
      const m = ASSUMED_ROLE.exec(caller.userArn);
      return !!m && m[1] === principal.partition && m[2] === principal.accountId && m[3] === principal.roleName;
    }
  }
};

/** The refusal of a caller no grant covers: `what` names only what the caller itself asked for, if anything. */
export const notGranted = (caller: CallerIdentity, what?: string): AccessDeniedError =>
  new AccessDeniedError(
    `caller ${quote(caller.userArn, 256)} has no grant${what ? ` ${what}` : ''}`,
    'caller_not_granted',
  );

/** The clients the caller's grants name (empty: no grant at all). */
export const clientsGrantedTo = (grants: readonly Grant[], caller: CallerIdentity): Set<string> =>
  new Set(grants.filter((g) => principalMatches(g.principal, caller)).map((g) => g.client));

/** Every scope the caller's grants give it for the client (empty: no grant). */
export const grantedScopes = (grants: readonly Grant[], caller: CallerIdentity, client: string): Set<string> =>
  new Set(
    grants.filter((g) => g.client === client && principalMatches(g.principal, caller)).flatMap((g) => [...g.scopes]),
  );

/**
 * Throws AccessDeniedError naming the scopes no grant of this caller covers for the client; returns every scope
 * the caller may have with the client. The refusal is the same whether a client or scope is configured or not
 * (grants only ever name configured ones), so a caller without a grant learns nothing about the configuration.
 */
export const authorize = (
  grants: readonly Grant[],
  caller: CallerIdentity,
  client: string,
  scopes: readonly string[],
): Set<string> => {
  const allowed = grantedScopes(grants, caller, client);
  const missing = scopes.filter((s) => !allowed.has(s));
  if (missing.length === 0) return allowed;
  throw notGranted(
    caller,
    allowed.size === 0 ? `for client ${quote(client)}` : `for scope ${missing.map((s) => quote(s)).join(', ')}`,
  );
};

/** A proven identity (STS GetCallerIdentity) as a caller: no organization, since STS does not name one. */
export const callerFromProof = (proven: { arn: string; accountId: string }): CallerIdentity => ({
  userArn: proven.arn,
  accountId: proven.accountId,
  principalOrgId: undefined,
});

/** The principal behind an ARN: a role for any of its sessions, else the ARN itself. */
const principalOf = (caller: CallerIdentity): string => {
  const m = ASSUMED_ROLE.exec(caller.userArn);
  return m ? `role:${m[1]}:${m[2]}:${m[3]}` : caller.userArn;
};

/** Whether two verified identities are one principal (two sessions of one role are). */
export const samePrincipal = (a: CallerIdentity, b: CallerIdentity): boolean =>
  a.accountId === b.accountId && principalOf(a) === principalOf(b);

/** Parses BROKER_CALLERS: a JSON array of `{ "principal", "client", "scopes" }`, checked against the clients. */
export const parseGrants = (
  text: string | undefined,
  clientScopes: ReadonlyMap<string, ReadonlySet<string>>,
  envName: string,
  options: { organizations: boolean } = { organizations: true },
): Grant[] => {
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
