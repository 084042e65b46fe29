import type { CallOptions, TokenBroker } from '../../../functions/lib/broker/token-broker';
import type { TokenRequest } from '../../../functions/lib/domain/token-request';

/**
 * The broker at the handler's I/O edge, for unit tests of the token handler: it answers `accessToken` for any request
 * that reaches it, from memory, and keeps each request with the options the handler passed (who asked, what it may
 * hold).
 */
export const answeringBroker = (accessToken: string) => {
  const calls: { request: TokenRequest; options: CallOptions }[] = [];
  const broker = {
    getToken: async (request: TokenRequest, options: CallOptions) => {
      calls.push({ request, options });
      return {
        answer: {
          access_token: accessToken,
          token_type: 'Bearer',
          expires_in: 3000,
          expires_at: '2026-11-29T08:50:00.000Z',
          scope: request.scopes.join(' '),
          client: request.client.name,
        },
        source: 'memory',
      };
    },
  } as unknown as TokenBroker;
  return { broker, calls };
};
