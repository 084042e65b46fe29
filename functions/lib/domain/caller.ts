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
