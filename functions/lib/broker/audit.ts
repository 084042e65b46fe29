/**
 * The audit trail, written here only: one line for every token handed out (`audit: "issued"`) and one for every
 * refusal (`audit: "refused"`). Each names the caller as far as it is proven (`caller`, and `identity`: verified now
 * or cached), the key's fields, and never a token (a fingerprint), a secret or an identity proof.
 *
 * A refusal line survives any event: its decision fields (`audit`, `error`, `status`, `reason`) come first, right
 * after Powertools' own keys, and its other fields are cut to fit MAX_REFUSAL_FIELDS_BYTES (a long text or list is
 * shortened, and a field that no longer fits is left out and named in `omitted`), so the whole line stays under 4 KB
 * and CloudWatch never cuts the decision off. Identities a URL-shaped event claims reach it only as
 * function-url.ts's label (an ARN of bounded length, or `invalid (<n> characters)`).
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

/**
 * The most bytes of JSON a refusal line's own fields take: with Powertools' keys (level, message, timestamp, service,
 * function name, ARN and request id, trace id: well under 1 KB) a refusal line stays under 4 KB.
 */
export const MAX_REFUSAL_FIELDS_BYTES = 3_072;
/** The longest text or list (as JSON) a refusal line keeps as it is. */
export const MAX_REFUSAL_FIELD_CHARS = 1_024;

const jsonBytes = (value: unknown): number => Buffer.byteLength(JSON.stringify(value) ?? '');

/** A field's value as a refusal line keeps it: a long text cut (saying how long it was), a long list shortened. */
const shortened = (value: unknown): unknown => {
  if (typeof value === 'string' && value.length > MAX_REFUSAL_FIELD_CHARS)
    return `${value.slice(0, MAX_REFUSAL_FIELD_CHARS)}… (${value.length} characters)`;
  if (!Array.isArray(value) || jsonBytes(value) <= MAX_REFUSAL_FIELD_CHARS) return value;
  const kept: unknown[] = [];
  for (const item of value) {
    if (jsonBytes([...kept, shortened(item), '… (999 more)']) > MAX_REFUSAL_FIELD_CHARS) break;
    kept.push(shortened(item));
  }
  return [...kept, `… (${value.length - kept.length} more)`];
};

/** The decision first, then every other field that fits, in order; those that do not are named in `omitted`. */
const fitted = (decision: Record<string, unknown>, rest: Record<string, unknown>): Record<string, unknown> => {
  const line: Record<string, unknown> = { ...decision };
  const omitted: string[] = [];
  // Room kept for `omitted` itself: the names of the fields a refusal line can carry.
  let room = MAX_REFUSAL_FIELDS_BYTES - jsonBytes(line) - 160;
  for (const [name, raw] of Object.entries(rest)) {
    if (raw === undefined) continue;
    const value = shortened(raw);
    const bytes = jsonBytes({ [name]: value });
    if (bytes > room) omitted.push(name);
    else {
      line[name] = value;
      room -= bytes;
    }
  }
  return omitted.length === 0 ? line : { ...line, omitted };
};

/** A refusal's line: error level for the broker's own failures (5xx), warning for the caller's. */
export const auditRefused = (
  log: Log,
  { who, asked, body, err, requestId, describeUnexpected = true }: Refusal,
): void => {
  const { reason, detail } = errorLogFields(err);
  const decision = { audit: 'refused', error: body.error, status: body.status, reason };
  const rest = {
    requestId,
    ...who,
    ...(asked ? { client: asked.client, scopes: asked.scopes } : {}),
    detail,
    ...(err instanceof BrokerError || !describeUnexpected ? {} : { detail: body.error_description, errorName: detail }),
  };
  log[body.status >= 500 ? 'error' : 'warn']('token request refused', fitted(decision, rest));
};
