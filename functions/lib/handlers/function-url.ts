/**
 * The token function behind its Function URL (AuthType AWS_IAM): the same JSON body as a direct invoke, the
 * same JSON answer, the error's `status` as the HTTP status. The caller is the identity AWS verified; an event
 * without one is refused, so a URL misconfigured with AuthType NONE is not an open token faucet.
 */
import type { LambdaFunctionURLResult } from 'aws-lambda';
import type { Caller } from '../domain/caller';
import { isRecord } from '../shared/assert';
import { AccessDeniedError, BrokerError, InvalidRequestError, type OAuthErrorBody } from '../shared/errors';

export const MAX_URL_BODY_BYTES = 16 * 1024;

export interface UrlInput {
  payload?: unknown;
  caller?: Caller;
  /**
   * The identity the event's requestContext.authorizer.iam claims, as it may be logged (claimedIdentityLabel): its ARN
   * when that is one, else `invalid (<n> characters)`. Undefined when the event claims none.
   */
  claimed?: string;
  /** Why the request is refused before it is read as a token request. */
  refusal?: BrokerError;
}

/** The ARNs a Function URL's IAM authorizer names (a user, a role session, root, a federated user), bounded. */
const CLAIMED_ARN = /^arn:aws(?:-cn|-us-gov)?:(?:iam|sts)::\d{12}:[\w+=,.@/:-]{1,1000}$/;
export const MAX_CLAIMED_ARN_CHARS = 1_024;
const ORGANIZATION_ID = /^o-[a-z0-9]{10,32}$/;

const isClaimedArn = (value: unknown): value is string =>
  typeof value === 'string' && value.length <= MAX_CLAIMED_ARN_CHARS && CLAIMED_ARN.test(value);

/**
 * An identity a URL-shaped event claims, as a log line may carry it: the ARN itself when it is one (of at most
 * MAX_CLAIMED_ARN_CHARS), else `invalid (<n> characters)`, so a hand-made event cannot put what it likes, or as much
 * as it likes, into an audit line.
 */
export const claimedIdentityLabel = (value: unknown): string =>
  isClaimedArn(value)
    ? value
    : typeof value === 'string'
      ? `invalid (${value.length} characters)`
      : `invalid (${value === null ? 'null' : typeof value})`;

/**
 * An event with the envelope of a Function URL (payload format 2.0) event, as opposed to a direct invoke's token
 * request. Only the envelope is checked: a direct invoker can send this shape by hand with anything inside, so
 * every other field is `unknown` here and readUrlEvent checks each one it reads (LambdaFunctionURLEvent's types
 * would claim what nothing checked, such as a string body).
 */
export type UrlEventShape = Record<string, unknown> & {
  version: '2.0';
  requestContext: Record<string, unknown> & { http: Record<string, unknown> };
};

export const isFunctionUrlEvent = (event: unknown): event is UrlEventShape =>
  isRecord(event) && event.version === '2.0' && isRecord(event.requestContext) && isRecord(event.requestContext.http);

/**
 * requestContext.authorizer.iam, present only when AWS verified a SigV4 signature (AuthType AWS_IAM): the caller, if
 * its ARN, account and organization have the shapes AWS gives them (anything else was written by hand), and the
 * claimed identity as it may be logged.
 */
const verifiedCaller = (event: UrlEventShape): { caller?: Caller; claimed?: string } => {
  const { authorizer } = event.requestContext;
  const iam = isRecord(authorizer) && isRecord(authorizer.iam) ? authorizer.iam : undefined;
  if (!iam) return {};
  const claimed = claimedIdentityLabel(iam.userArn);
  const org = iam.principalOrgId === null || iam.principalOrgId === '' ? undefined : iam.principalOrgId;
  const wellFormed =
    isClaimedArn(iam.userArn) &&
    typeof iam.accountId === 'string' &&
    /^\d{12}$/.test(iam.accountId) &&
    (org === undefined || (typeof org === 'string' && ORGANIZATION_ID.test(org)));
  if (!wellFormed) return { claimed };
  return {
    claimed,
    caller: {
      arn: iam.userArn as string,
      accountId: iam.accountId as string,
      principalOrgId: org as string | undefined,
    },
  };
};

/** Lambda sends a string body (or none) and a boolean isBase64Encoded: anything else was written by hand. */
const malformedEnvelope = (what: string) =>
  new InvalidRequestError(`malformed Function URL event: ${what}`, 'url_event_malformed');

/** Reads a URL-shaped event. Never throws: every way it can be wrong is a refusal, answered and audited. */
export const readUrlEvent = (event: UrlEventShape): UrlInput => {
  const { caller, claimed } = verifiedCaller(event);
  if (!caller) {
    return {
      ...(claimed === undefined ? {} : { claimed }),
      refusal: new AccessDeniedError(
        'no IAM-verified caller: the function URL must use AuthType AWS_IAM and SigV4-signed requests',
        'caller_unverified',
      ),
    };
  }
  if (event.requestContext.http.method !== 'POST') {
    return {
      caller,
      claimed,
      refusal: new BrokerError('invalid_request', 405, 'method_not_allowed', 'only POST is allowed'),
    };
  }
  const { body, isBase64Encoded } = event;
  if (body !== undefined && body !== null && typeof body !== 'string') {
    return { caller, claimed, refusal: malformedEnvelope('"body" must be a string') };
  }
  if (isBase64Encoded !== undefined && typeof isBase64Encoded !== 'boolean') {
    return { caller, claimed, refusal: malformedEnvelope('"isBase64Encoded" must be a boolean') };
  }
  const raw = body ?? '';
  const text = isBase64Encoded === true ? Buffer.from(raw, 'base64').toString('utf8') : raw;
  if (Buffer.byteLength(text) > MAX_URL_BODY_BYTES) {
    return { caller, claimed, refusal: new InvalidRequestError(`the body is larger than ${MAX_URL_BODY_BYTES} bytes`) };
  }
  try {
    return { caller, claimed, payload: JSON.parse(text) as unknown };
  } catch {
    return { caller, claimed, refusal: new InvalidRequestError('the body must be a JSON token request') };
  }
};

/** The HTTP answer: JSON, never cached by anything in between. */
export const toUrlResponse = (body: object & Partial<OAuthErrorBody>): LambdaFunctionURLResult => ({
  statusCode: typeof body.status === 'number' && body.error !== undefined ? body.status : 200,
  headers: {
    'content-type': 'application/json',
    'cache-control': 'no-store',
    pragma: 'no-cache',
    ...(body.status === 405 ? { allow: 'POST' } : {}),
    ...(typeof body.retryAfterSeconds === 'number' ? { 'retry-after': String(body.retryAfterSeconds) } : {}),
  },
  body: JSON.stringify(body),
});
