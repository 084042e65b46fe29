/** A client's signing key as the broker uses it: the public half of a KMS key, and the JWK it is published as. */
import type { AssertionAlgorithm } from './settings';

/** A public key as a JWK (RFC 7517): RSA or EC P-256, with the members RFC 7638 hashes into the `kid`. */
export type PublicJwkMembers = { kty: 'RSA'; n: string; e: string } | { kty: 'EC'; crv: 'P-256'; x: string; y: string };

/** What `npm run jwks` publishes and the identity provider verifies assertions with. */
export type PublicJwk = PublicJwkMembers & { kid: string; alg: AssertionAlgorithm; use: 'sig' };

/** A KMS signing key, read once per container (GetPublicKey): what signs a client's assertions. */
export interface SigningKey {
  /**
   * The key as GetPublicKey named it (its ARN in AWS; an alias is resolved to its key): what Sign is asked to sign
   * with, so the signature is always by the key this `kid` names.
   */
  readonly keyId: string;
  /** The RFC 7638 JWK thumbprint of the public key: the assertion header's `kid`. */
  readonly kid: string;
  /** The JWS algorithm the key signs with: the configured one, or its key spec's default. */
  readonly algorithm: AssertionAlgorithm;
  readonly jwk: PublicJwk;
}
