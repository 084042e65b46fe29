import type { Context } from 'aws-lambda';
import { BrokerError, type OAuthErrorBody, errorLogFields, toOAuthError } from './errors';
import type { Logger } from './logger';
import type { Runtime } from './runtime';
import type { TokenAnswer } from './token-lifetime';
import { parseTokenRequest } from './token-request';

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

/**
 * The token function for direct Lambda Invoke. Errors are returned, not thrown: bad input is not a function
 * failure and must not trigger Lambda retries.
 */
export const createTokenHandler = (makeRuntime: () => Runtime, fallbackLog: () => Logger) => {
  const runtimeFor = lazyRuntime(makeRuntime, fallbackLog);
  return async (event: unknown, context?: InvocationContext): Promise<TokenResponse> => {
    const requestId = context?.awsRequestId;
    const built = runtimeFor(requestId);
    if ('error' in built) return built.error;
    const { runtime } = built;
    const log = runtime.log.child({ requestId });
    try {
      const request = parseTokenRequest(event, runtime.config);
      const deadlineMs = deadlineFor(runtime.clock.nowMs(), context);
      const { answer } = await runtime.broker.getToken(request, { deadlineMs, log, metrics: runtime.metrics });
      return answer;
    } catch (err) {
      runtime.metrics.count('Refusals');
      const body = toOAuthError(err);
      log[body.status >= 500 ? 'error' : 'warn']('token request refused', {
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
};
