/**
 * Who calls the broker (Caller) and what a grant in BROKER_CALLERS gives whom (CallerGrant, Principal). Parsed by
 * config/grants.ts; matched by callers/grants.ts.
 */

export type Principal =
  | { kind: 'account'; accountId: string }
  | { kind: 'organization'; orgId: string }
  | { kind: 'role'; partition: string; accountId: string; roleName: string; arn: string }
  | { kind: 'user'; arn: string };

export interface CallerGrant {
  principal: Principal;
  /** As written in BROKER_CALLERS, for logs and messages. */
  principalText: string;
  client: string;
  scopes: ReadonlySet<string>;
}

/**
 * A caller of the broker: the principal STS names for its identity proof, or (invoke-permission mode) the identity
 * AWS verified for a Function URL call (requestContext.authorizer.iam). Only the latter may name an organization.
 */
export interface Caller {
  /** `arn:aws:sts::123456789012:assumed-role/billing/session`, `arn:aws:iam::123456789012:user/ci`, ... */
  arn: string;
  accountId: string;
  principalOrgId: string | undefined;
}

/**
 * A principal refused whatever its grants say (the `revoked` list of the callers parameter): an IAM role (every
 * session of it), an IAM user, or one assumed-role session, matched exactly, never by account or prefix.
 */
export type Revocation =
  | { kind: 'role'; principal: Principal & { kind: 'role' }; text: string }
  | { kind: 'exact'; arn: string; text: string };

/** Who may get which tokens, and who is cut off, as one consistent value (BROKER_CALLERS, or the SSM parameter). */
export interface CallerList {
  readonly grants: readonly CallerGrant[];
  readonly revoked: readonly Revocation[];
}
