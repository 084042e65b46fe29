/**
 * @limitrail/token-broker-client: LimitRail tokens from the token broker for Node services.
 *
 *   import { TokenBrokerClient, invokeTransport, authorizedFetch } from '@limitrail/token-broker-client';
 *
 *   const broker = new TokenBrokerClient(invokeTransport('limitrail-token-broker-prod-token'));
 *   const token = await broker.token(['limitrail.usage.read']);
 *   const limitrail = authorizedFetch(broker, ['limitrail.usage.write']); // Bearer token, one retry after a 401
 *
 * See the repository README, "Caller's guide".
 */
export { TokenBrokerClient, type TokenBrokerClientOptions, type TokenOptions } from './client.js';
export { authorizedFetch, type AuthorizedFetch, type AuthorizedFetchOptions } from './fetch.js';
export { BROKER_ERRORS, TokenBrokerError, type TokenBrokerErrorOptions } from './errors.js';
export {
  invokeTransport,
  urlTransport,
  type InvokeTransportOptions,
  type Transport,
  type TransportOptions,
  type UrlTransportOptions,
} from './transports.js';
export {
  PROOF_AUDIENCE_HEADER,
  signIdentityProof,
  stsUrlFor,
  type Credentials,
  type IdentityProof,
  type ProofOptions,
} from './proof.js';
export type { BrokerErrorAnswer, TokenAnswer, TokenRequest } from './answer.js';
