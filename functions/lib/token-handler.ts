import type { Context } from 'aws-lambda';
import { BrokerError, type OAuthErrorBody, toOAuthError } from './errors';
import type { Logger } from './logger';
import type { Runtime } from './runtime';
import type { TokenAnswer } from './token-lifetime';
import { parseTokenRequest } from './token-request';

export type TokenResponse = TokenAnswer | OAuthErrorBody;

/**
 * The token function for direct Lambda Invoke. Errors are returned, not thrown: bad input is not a function
 * failure and must not trigger Lambda retries. The runtime is built on the first invocation and kept; if the
 * configuration is invalid, every invocation answers that server_error (and logs it).
 */
export const createTokenHandler = (makeRuntime: () => Runtime, fallbackLog: () => Logger) => {
  let built: { runtime: Runtime } | { error: unknown } | undefined;

  return async (event: unknown, context?: Pick<Context, 'awsRequestId'>): Promise<TokenResponse> => {
    if (!built) {
      try {
        built = { runtime: makeRuntime() };
      } catch (error) {
        built = { error };
      }
    }
    const requestId = context?.awsRequestId;
    if ('error' in built) {
      const body = toOAuthError(built.error);
      fallbackLog().error('broker configuration invalid', { requestId, reason: reasonOf(built.error), detail: body.error_description });
      return body;
    }
    const { runtime } = built;
    const log = runtime.log.child({ requestId });
    try {
      const request = parseTokenRequest(event, runtime.config);
      const { answer } = await runtime.broker.getToken(request, log);
      return answer;
    } catch (err) {
      const body = toOAuthError(err);
      const level = body.status >= 500 ? 'error' : 'warn';
      log[level]('token request refused', {
        reason: reasonOf(err),
        error: body.error,
        status: body.status,
        detail: body.error_description,
        ...(err instanceof BrokerError ? {} : { errorName: (err as Error | undefined)?.name ?? typeof err }),
      });
      return body;
    }
  };
};

const reasonOf = (err: unknown): string => (err instanceof BrokerError ? err.reason : 'unexpected');
