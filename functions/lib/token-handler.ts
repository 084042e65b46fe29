import type { Context, LambdaFunctionURLResult } from 'aws-lambda';
import { authorize } from './caller-grants';
import { BrokerError, type OAuthErrorBody, errorLogFields, toOAuthError } from './errors';
import type { Logger } from './logger';
import type { Runtime } from './runtime';
import type { TokenAnswer } from './token-lifetime';
import { type TokenRequest, parseTokenRequest } from './token-request';
import { type UrlInput, isFunctionUrlEvent, readUrlEvent, toUrlResponse } from './url-request';

export type TokenResponse = TokenAnswer | OAuthErrorBody;
export type InvocationContext = Partial<Pick<Context, 'awsRequestId' | 'getRemainingTimeInMillis'>>;

/** Kept free at the end of an invocation to answer cleanly instead of timing out. */
export const DEADLINE_MARGIN_MS = 500;
/** Time budget when the caller gives no Lambda context (tests, local tools). */
const DEFAULT_BUDGET_MS = 10_000;

/** Epoch ms by which the answer must be ready: the Lambda's remaining time less a safety margin. */
export const deadlineFor = (nowMs: number, context: InvocationContext | undefined): number =>
  nowMs + (context?.getRemainingTimeInMillis?.() ?? DEFAULT_BUDGET_MS) - DEADLINE_MARGIN_MS;

/**
 * Builds the container's runtime on the first invocation and keeps it. If the configuration is invalid, every
 * invocation gets `onConfigError`'s answer (and the problem is logged each time).
 */
export const lazyRuntime = (makeRuntime: () => Runtime, fallbackLog: () => Logger) => {
  let built: { runtime: Runtime } | { error: unknown } | undefined;
  return (requestId: string | undefined): { runtime: Runtime } | { error: OAuthErrorBody } => {
    if (!built) {
      try {
        built = { runtime: makeRuntime() };
      } catch (error) {
        built = { error };
      }
    }
    if ('runtime' in built) return built;
    const body = toOAuthError(built.error);
    fallbackLog().error('broker configuration invalid', { requestId, ...errorLogFields(built.error) });
    return { error: body };
  };
};

/** Who asked, for audit lines: the verified ARN of a URL caller, or "direct invoke" (IAM gated the invoke). */
const DIRECT_INVOKE = 'direct invoke';

/**
 * The token function, for direct Lambda Invoke and for its Function URL. Errors are returned, not thrown: bad
 * input is not a function failure and must not trigger Lambda retries. URL callers are authorized against
 * BROKER_CALLERS before anything else happens; direct invokes are gated by the IAM permission to invoke.
 * Every token handed out and every refusal gets one audit line.
 */
export const createTokenHandler = (makeRuntime: () => Runtime, fallbackLog: () => Logger) => {
  const runtimeFor = lazyRuntime(makeRuntime, fallbackLog);

  const handle = async (input: UrlInput & { url: boolean }, context?: InvocationContext): Promise<TokenResponse> => {
    const requestId = context?.awsRequestId;
    const built = runtimeFor(requestId);
    if ('error' in built) return built.error;
    const { runtime } = built;
    const caller = input.url ? (input.caller?.userArn ?? 'unverified') : DIRECT_INVOKE;
    const log = runtime.log.child({ requestId });
    let request: TokenRequest | undefined;
    try {
      if (input.refusal) throw input.refusal;
      request = parseTokenRequest(input.payload, runtime.config);
      if (input.url) authorize(runtime.config.grants, input.caller!, request.client.name, request.scopes);
      const deadlineMs = deadlineFor(runtime.clock.nowMs(), context);
      const { answer } = await runtime.broker.getToken(request, { deadlineMs, log, metrics: runtime.metrics, caller });
      return answer;
    } catch (err) {
      runtime.metrics.count('Refusals');
      const body = toOAuthError(err);
      log[body.status >= 500 ? 'error' : 'warn']('token request refused', {
        audit: 'refused',
        caller,
        ...(request ? { client: request.client.name, scopes: request.scopes } : {}),
        error: body.error,
        status: body.status,
        ...errorLogFields(err),
        ...(err instanceof BrokerError ? {} : { detail: body.error_description, errorName: errorLogFields(err).detail }),
      });
      return body;
    } finally {
      runtime.metrics.flush(runtime.clock.nowMs());
    }
  };

  return async (event: unknown, context?: InvocationContext): Promise<TokenResponse | LambdaFunctionURLResult> =>
    isFunctionUrlEvent(event)
      ? toUrlResponse(await handle({ ...readUrlEvent(event), url: true }, context))
      : handle({ payload: event, url: false }, context);
};
