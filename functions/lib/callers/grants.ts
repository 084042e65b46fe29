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
import { ASSUMED_ROLE_ARN as ASSUMED_ROLE } from '../config/grants';
import type { Caller, CallerGrant, CallerList, Principal, Revocation } from '../domain/caller';
import { AccessDeniedError, quote } from '../shared/errors';

export const principalMatches = (principal: Principal, caller: Caller): boolean => {
  switch (principal.kind) {
    case 'account':
      return caller.accountId === principal.accountId;
    case 'organization':
      return caller.principalOrgId === principal.orgId;
    case 'user':
      return caller.arn === principal.arn;
    case 'role': {
      if (caller.arn === principal.arn) return true;
      const m = ASSUMED_ROLE.exec(caller.arn);
      return !!m && m[1] === principal.partition && m[2] === principal.accountId && m[3] === principal.roleName;
    }
  }
};

/** The refusal of a caller no grant covers: `what` names only what the caller itself asked for, if anything. */
export const notGranted = (caller: Caller, what?: string): AccessDeniedError =>
  new AccessDeniedError(`caller ${quote(caller.arn, 256)} has no grant${what ? ` ${what}` : ''}`, 'caller_not_granted');

/** The clients the caller's grants name (empty: no grant at all). */
export const clientsGrantedTo = (grants: readonly CallerGrant[], caller: Caller): Set<string> =>
  new Set(grants.filter((g) => principalMatches(g.principal, caller)).map((g) => g.client));

/** Every scope the caller's grants give it for the client (empty: no grant). */
export const grantedScopes = (grants: readonly CallerGrant[], caller: Caller, client: string): Set<string> =>
  new Set(
    grants.filter((g) => g.client === client && principalMatches(g.principal, caller)).flatMap((g) => [...g.scopes]),
  );

/**
 * Throws AccessDeniedError naming the scopes no grant of this caller covers for the client; returns every scope
 * the caller may have with the client. The refusal is the same whether a client or scope is configured or not
 * (grants only ever name configured ones), so a caller without a grant learns nothing about the configuration.
 */
export const authorize = (
  grants: readonly CallerGrant[],
  caller: Caller,
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

/**
 * The principal behind a verified identity: a role for any of its sessions (`role:<partition>:<account>:<name>`), else
 * the ARN itself. What the forced-refresh budget and the verified-identity cache count per caller: new sessions of a
 * role are not new callers.
 */
export const principalKeyOf = (caller: Pick<Caller, 'arn'>): string => {
  const m = ASSUMED_ROLE.exec(caller.arn);
  return m ? `role:${m[1]}:${m[2]}:${m[3]}` : caller.arn;
};

/** Whether two verified identities are one principal (two sessions of one role are). */
export const samePrincipal = (a: Caller, b: Caller): boolean =>
  a.accountId === b.accountId && principalKeyOf(a) === principalKeyOf(b);

/** The revocation that cuts this caller off, if any: its role (any session), its own ARN (a user, one session). */
export const revocationOf = (list: CallerList, caller: Caller): Revocation | undefined =>
  list.revoked.find((r) => (r.kind === 'exact' ? r.arn === caller.arn : principalMatches(r.principal, caller)));

/**
 * Throws AccessDeniedError (`caller_revoked`) when the caller is revoked: checked before any grant is looked at, so a
 * revoked principal gets nothing whatever its grants say (a stolen session's proofs still verify with STS).
 */
export const refuseRevoked = (list: CallerList, caller: Caller): void => {
  const revoked = revocationOf(list, caller);
  if (!revoked) return;
  throw new AccessDeniedError(
    `caller ${quote(caller.arn, 256)} is revoked${revoked.text === caller.arn ? '' : ` (${quote(revoked.text, 256)})`}; ask the platform team`,
    'caller_revoked',
  );
};
