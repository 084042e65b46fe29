/**
 * @limitrail/token-broker-client: LimitRail tokens from the token broker for Node services.
 *
 *   import { TokenBrokerClient, invokeTransport, authorizedFetch } from '@limitrail/token-broker-client';
 *
 *   const broker = new TokenBrokerClient(invokeTransport('limitrail-token-broker-prod-token'));
 *   const token = await broker.token(['limitrail.usage.read']);
 *   const limitrail = authorizedFetch(broker, ['limitrail.usage.write']); // Bearer token, one retry after a 401
 *
 * See docs/callers.md in the repository.
 */

export type { BrokerErrorAnswer, TokenAnswer, TokenRequest } from './answer.js';
export { TokenBrokerClient, type TokenBrokerClientOptions, type TokenOptions } from './client.js';
export { BROKER_ERRORS, TokenBrokerError, type TokenBrokerErrorOptions } from './errors.js';
export { type AuthorizedFetch, type AuthorizedFetchOptions, authorizedFetch } from './fetch.js';
export {
  type Credentials,
  type IdentityProof,
  PROOF_AUDIENCE_HEADER,
  type ProofOptions,
  signIdentityProof,
  stsUrlFor,
} from './proof.js';
export {
  type InvokeTransportOptions,
  invokeTransport,
  type Transport,
  type TransportOptions,
  type UrlTransportOptions,
  urlTransport,
} from './transports.js';
