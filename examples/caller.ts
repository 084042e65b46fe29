/**
 * How a Node service gets LimitRail tokens from the broker with its client package, @limitrail/token-broker-client
 * (clients/node; docs/callers.md). Type-checked with the project; the package's own tests run it against
 * the local stack.
 *
 * The client keeps tokens in memory until 60 s before they expire, makes one broker call however many requests
 * ask at once, signs an identity proof with the service's own AWS credentials for every broker call, retries
 * `temporarily_unavailable` within 10 s, and after LimitRail's 401 asks once for a fresh token.
 */
import {
  authorizedFetch,
  invokeTransport,
  TokenBrokerClient,
  TokenBrokerError,
  urlTransport,
} from '@limitrail/token-broker-client';

const USAGE_COMMIT_URL = 'https://api.limitrail.example/v1/usage/commit';

/** One client per process (its cache and single flight are per object): direct Lambda Invoke, default credentials. */
export const brokerClient = (functionName = 'limitrail-token-broker-prod-token'): TokenBrokerClient =>
  new TokenBrokerClient(invokeTransport(functionName));

/** The same through the Function URL: the URL does not name the function, so the audience is given. */
export const brokerClientViaUrl = (): TokenBrokerClient =>
  new TokenBrokerClient(
    urlTransport('https://abc123.lambda-url.eu-central-1.on.aws/', {
      region: 'eu-central-1',
      audience: 'limitrail-token-broker-prod-token',
    }),
  );

/** A LimitRail call with a broker token: `authorizedFetch` adds the bearer token and retries once after a 401. */
export const commitUsage = async (broker: TokenBrokerClient, usage: unknown): Promise<Response> => {
  const limitrail = authorizedFetch(broker, ['limitrail.usage.write']);
  try {
    return await limitrail(USAGE_COMMIT_URL, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(usage),
    });
  } catch (err) {
    // access_denied: this role has no grant for the scope; temporarily_unavailable: still down after 10 s of retries.
    if (err instanceof TokenBrokerError) console.error(`no LimitRail token: ${err.error} (${err.status})`);
    throw err;
  }
};

/** The same by hand, for a client other than fetch: one forced refresh after a 401, never a loop. */
export const readUsage = async (broker: TokenBrokerClient, send: (token: string) => Promise<{ status: number }>) => {
  const scopes = ['limitrail.usage.read'];
  const token = await broker.token(scopes);
  const res = await send(token);
  return res.status === 401 ? send(await broker.tokenAfter401(scopes, token)) : res;
};
