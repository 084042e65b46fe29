/**
 * The JOSE side of a KMS signing key, with node:crypto only: its public key as a JWK (RFC 7517), the RFC 7638
 * thumbprint that is its `kid`, the KMS signing algorithm of each JWS algorithm (RFC 7518 section 3), and an ECDSA
 * signature from KMS's DER form to the JWS form. The token function (KmsAssertionSigner) and `npm run jwks` share it,
 * so the `kid` an assertion names is the one the published JWK Set carries.
 */
import { createHash, createPublicKey } from 'node:crypto';
import type { AssertionAlgorithm } from '../domain/settings';
import type { PublicJwk, PublicJwkMembers, SigningKey } from '../domain/signing-key';

/** KMS's name for each JWS algorithm (Sign's SigningAlgorithm, and the kms:SigningAlgorithm IAM condition key). */
export const KMS_SIGNING_ALGORITHMS = {
  RS256: 'RSASSA_PKCS1_V1_5_SHA_256',
  PS256: 'RSASSA_PSS_SHA_256',
  ES256: 'ECDSA_SHA_256',
} as const satisfies Record<AssertionAlgorithm, string>;

/** The JWS algorithm a KMS key spec signs with unless configured otherwise; undefined for a spec JWS cannot use. */
export const defaultAlgorithmFor = (keySpec: string | undefined): AssertionAlgorithm | undefined => {
  if (keySpec === 'RSA_2048' || keySpec === 'RSA_3072' || keySpec === 'RSA_4096') return 'RS256';
  return keySpec === 'ECC_NIST_P256' ? 'ES256' : undefined;
};

/** Whether a JWS algorithm can be used with a public key of this type (ES256: P-256 only; RS256, PS256: RSA). */
export const algorithmFits = (algorithm: AssertionAlgorithm, jwk: PublicJwkMembers): boolean =>
  algorithm === 'ES256' ? jwk.kty === 'EC' : jwk.kty === 'RSA';

/**
 * A DER SubjectPublicKeyInfo (what KMS GetPublicKey returns) as the JWK members of an RSA or EC P-256 key. Throws
 * for any other key.
 */
export const publicJwkMembers = (spkiDer: Uint8Array): PublicJwkMembers => {
  const jwk = createPublicKey({ key: Buffer.from(spkiDer), format: 'der', type: 'spki' }).export({ format: 'jwk' });
  if (jwk.kty === 'RSA' && jwk.n && jwk.e) return { kty: 'RSA', n: jwk.n, e: jwk.e };
  if (jwk.kty === 'EC' && jwk.crv === 'P-256' && jwk.x && jwk.y) return { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y };
  throw new TypeError(
    `a ${jwk.kty ?? 'unknown'} ${jwk.crv ?? ''} public key: only RSA and EC P-256 keys sign JWS here`,
  );
};

/** RFC 7638: the SHA-256 of the required members in lexicographic order, without whitespace, base64url. */
export const jwkThumbprint = (jwk: PublicJwkMembers): string => {
  const required =
    jwk.kty === 'RSA' ? { e: jwk.e, kty: jwk.kty, n: jwk.n } : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  return createHash('sha256').update(JSON.stringify(required)).digest('base64url');
};

/** The public JWK as published: the key's members, its thumbprint as `kid`, the algorithm, `use: sig`. */
export const publicJwk = (members: PublicJwkMembers, algorithm: AssertionAlgorithm): PublicJwk => ({
  ...members,
  kid: jwkThumbprint(members),
  alg: algorithm,
  use: 'sig',
});

/** The JWK Set to register with the identity provider: every key, in the order given. */
export const jwkSet = (keys: readonly SigningKey[]): { keys: PublicJwk[] } => ({ keys: keys.map((k) => k.jwk) });

/**
 * An ECDSA signature as KMS returns it (DER: SEQUENCE { INTEGER r, INTEGER s }) in the JWS form (RFC 7518 section
 * 3.4): r and s as unsigned big-endian integers of `size` bytes each (32 for P-256), concatenated.
 */
export const derToJose = (der: Uint8Array, size = 32): Uint8Array => {
  const malformed = (): never => {
    throw new TypeError('not a DER-encoded ECDSA signature');
  };
  let at = 0;
  const byte = () => (at < der.length ? der[at++]! : malformed());
  const length = () => {
    const first = byte();
    if (first < 0x80) return first;
    if (first !== 0x81) return malformed(); // a P-256 signature is at most 72 bytes: one length byte at most
    return byte();
  };
  if (byte() !== 0x30 || length() !== der.length - at) malformed();
  const integer = () => {
    if (byte() !== 0x02) malformed();
    const n = length();
    if (n === 0 || at + n > der.length) malformed();
    let value = der.subarray(at, at + n);
    at += n;
    while (value.length > size && value[0] === 0) value = value.subarray(1);
    if (value.length > size) malformed();
    const out = new Uint8Array(size);
    out.set(value, size - value.length);
    return out;
  };
  const r = integer();
  const s = integer();
  if (at !== der.length) malformed();
  const jose = new Uint8Array(2 * size);
  jose.set(r, 0);
  jose.set(s, size);
  return jose;
};
