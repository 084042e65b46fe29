/**
 * authorizedFetch: `fetch` for the LimitRail API with a broker token. It adds `Authorization: Bearer <token>`, and
 * when LimitRail answers 401 it asks the broker once for a token that is not the rejected one (`tokenAfter401`)
 * and sends the request once more. A second 401 is returned as it is: never a loop. A 403 is not retried (the
 * token lacks a scope: ask for the right scopes).
 */
import type { TokenBrokerClient, TokenOptions } from './client.js';

export interface AuthorizedFetchOptions extends TokenOptions {
  /** Default: the global fetch. */
  fetch?: typeof fetch;
}

export type AuthorizedFetch = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

const isStream = (body: unknown): boolean => typeof ReadableStream !== 'undefined' && body instanceof ReadableStream;

/**
 *   const limitrail = authorizedFetch(broker, ['limitrail.usage.write']);
 *   const res = await limitrail('https://api.limitrail.example/v1/usage/commit', { method: 'POST', body });
 */
export const authorizedFetch = (
  broker: Pick<TokenBrokerClient, 'token' | 'tokenAfter401'>,
  scopes: readonly string[],
  options: AuthorizedFetchOptions = {},
): AuthorizedFetch => {
  const send = options.fetch ?? fetch;
  const tokenOptions = options.client === undefined ? {} : { client: options.client };
  return async (input, init = {}) => {
    // A request may be sent twice: its body must be one that can be (a string, bytes, a form, a Blob).
    if (isStream(init.body))
      throw new TypeError(
        'authorizedFetch needs a body it can send twice (string, bytes, FormData, URLSearchParams, Blob), not a stream',
      );
    const retryInput = input instanceof Request ? input.clone() : input;
    const withToken = (token: string): RequestInit => {
      const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
      headers.set('authorization', `Bearer ${token}`);
      return { ...init, headers };
    };
    const token = await broker.token(scopes, tokenOptions);
    const first = await send(input, withToken(token));
    if (first.status !== 401) return first;
    await first.body?.cancel().catch(() => undefined);
    const fresh = await broker.tokenAfter401(scopes, token, tokenOptions);
    return send(retryInput, withToken(fresh));
  };
};
