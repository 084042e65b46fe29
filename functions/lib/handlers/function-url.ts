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
  /** Why the request is refused before it is read as a token request. */
  refusal?: BrokerError;
}

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

/** requestContext.authorizer.iam, present only when AWS verified a SigV4 signature (AuthType AWS_IAM). */
const verifiedCaller = (event: UrlEventShape): Caller | undefined => {
  const { authorizer } = event.requestContext;
  const iam = isRecord(authorizer) && isRecord(authorizer.iam) ? authorizer.iam : undefined;
  if (!iam || typeof iam.userArn !== 'string' || typeof iam.accountId !== 'string' || !/^\d{12}$/.test(iam.accountId)) {
    return undefined;
  }
  const org = iam.principalOrgId;
  return {
    arn: iam.userArn,
    accountId: iam.accountId,
    principalOrgId: typeof org === 'string' && org !== '' ? org : undefined,
  };
};

/** Lambda sends a string body (or none) and a boolean isBase64Encoded: anything else was written by hand. */
const malformedEnvelope = (what: string) =>
  new InvalidRequestError(`malformed Function URL event: ${what}`, 'url_event_malformed');

/** Reads a URL-shaped event. Never throws: every way it can be wrong is a refusal, answered and audited. */
export const readUrlEvent = (event: UrlEventShape): UrlInput => {
  const caller = verifiedCaller(event);
  if (!caller) {
    return {
      refusal: new AccessDeniedError(
        'no IAM-verified caller: the function URL must use AuthType AWS_IAM and SigV4-signed requests',
        'caller_unverified',
      ),
    };
  }
  if (event.requestContext.http.method !== 'POST') {
    return { caller, refusal: new BrokerError('invalid_request', 405, 'method_not_allowed', 'only POST is allowed') };
  }
  const { body, isBase64Encoded } = event;
  if (body !== undefined && body !== null && typeof body !== 'string') {
    return { caller, refusal: malformedEnvelope('"body" must be a string') };
  }
  if (isBase64Encoded !== undefined && typeof isBase64Encoded !== 'boolean') {
    return { caller, refusal: malformedEnvelope('"isBase64Encoded" must be a boolean') };
  }
  const raw = body ?? '';
  const text = isBase64Encoded === true ? Buffer.from(raw, 'base64').toString('utf8') : raw;
  if (Buffer.byteLength(text) > MAX_URL_BODY_BYTES) {
    return { caller, refusal: new InvalidRequestError(`the body is larger than ${MAX_URL_BODY_BYTES} bytes`) };
  }
  try {
    return { caller, payload: JSON.parse(text) as unknown };
  } catch {
    return { caller, refusal: new InvalidRequestError('the body must be a JSON token request') };
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
