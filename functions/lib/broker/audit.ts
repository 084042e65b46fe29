/**
 * The audit trail, written here only: one line for every token handed out (`audit: "issued"`) and one for every
 * refusal (`audit: "refused"`). Each names the caller as far as it is proven (`caller`, and `identity`: verified now
 * or cached), the key's fields, and never a token (a fingerprint), a secret or an identity proof.
 */

import { tokenFingerprint } from '../domain/cache-key';
import type { CachedToken } from '../domain/cached-token';
import type { TokenSource } from '../ports';
import { BrokerError, errorLogFields, type OAuthErrorBody } from '../shared/errors';
import type { Log } from '../shared/logger';

/** What the audit lines say of the caller: its proven ARN once known, and how it was established. */
export interface AuditCaller {
  caller: string;
  identity?: 'verified' | 'cached';
  /** The identity a Function URL event names (requestContext.authorizer.iam) when it is not the proven caller. */
  urlCaller?: string;
}

/** Who asked, for audit lines when nothing proved it: a direct invoke in invoke-permission mode. */
export const DIRECT_INVOKE = 'direct invoke';

export const auditIssued = (
  log: Log,
  who: Pick<AuditCaller, 'caller' | 'identity'>,
  keyFields: Record<string, unknown>,
  source: TokenSource,
  token: CachedToken,
  stale: boolean,
): void =>
  log.info('token served', {
    audit: 'issued',
    caller: who.caller,
    ...(who.identity ? { identity: who.identity } : {}),
    ...keyFields,
    source,
    tokenFingerprint: tokenFingerprint(token.accessToken),
    expiresAtEpochSec: token.expiresAtEpochSec,
    ...(stale ? { stale } : {}),
  });

export interface Refusal {
  who: AuditCaller;
  /** What the caller asked for, once its request was read and authorized far enough to name it. */
  asked?: { client: string; scopes: readonly string[] } | undefined;
  body: OAuthErrorBody;
  err: unknown;
  requestId?: string | undefined;
  /**
   * For an error that is not a refusal the broker made (a bug): the answer's description as `detail` and the error's
   * name as `errorName` (default). The last-resort line, written when the refusal path itself failed, keeps the
   * error's own fields only.
   */
  describeUnexpected?: boolean;
}

/** A refusal's line: error level for the broker's own failures (5xx), warning for the caller's. */
export const auditRefused = (
  log: Log,
  { who, asked, body, err, requestId, describeUnexpected = true }: Refusal,
): void => {
  const why = errorLogFields(err);
  log[body.status >= 500 ? 'error' : 'warn']('token request refused', {
    audit: 'refused',
    ...(requestId === undefined ? {} : { requestId }),
    ...who,
    ...(asked ? { client: asked.client, scopes: asked.scopes } : {}),
    error: body.error,
    status: body.status,
    ...why,
    ...(err instanceof BrokerError || !describeUnexpected
      ? {}
      : { detail: body.error_description, errorName: why.detail }),
  });
};
