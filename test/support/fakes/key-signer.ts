/**
 * An AssertionSigner over node:crypto keys, for unit tests of what is built around a signature (the assertion, the
 * retries, the metrics): what KmsAssertionSigner does with KMS, in memory. Failures can be queued.
 */
import { constants, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import type { AssertionAlgorithm } from '../../../functions/lib/domain/settings';
import type { SigningKey } from '../../../functions/lib/domain/signing-key';
import type { AssertionSigner } from '../../../functions/lib/ports';
import { publicJwk, publicJwkMembers } from '../../../functions/lib/upstream/jwk';

export const keyPairFor = (algorithm: AssertionAlgorithm) =>
  algorithm === 'ES256'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : generateKeyPairSync('rsa', { modulusLength: 2048 });

/** A JWS signature by `privateKey` as RFC 7518 defines it for the algorithm (PS256: salt of 32 bytes; ES256: r || s). */
export const jwsSignature = (algorithm: AssertionAlgorithm, privateKey: KeyObject, input: string): Buffer =>
  algorithm === 'ES256'
    ? sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' })
    : algorithm === 'PS256'
      ? sign('sha256', Buffer.from(input), {
          key: privateKey,
          padding: constants.RSA_PKCS1_PSS_PADDING,
          saltLength: 32,
        })
      : sign('sha256', Buffer.from(input), privateKey);

export class KeySigner implements AssertionSigner {
  readonly publicKey: KeyObject;
  readonly #privateKey: KeyObject;
  readonly #failures: Error[] = [];
  readonly signed: string[] = [];
  keyReads = 0;

  constructor(
    readonly algorithm: AssertionAlgorithm,
    readonly keyId = 'arn:aws:kms:us-east-1:111111111111:key/11111111-2222-3333-4444-555555555555',
  ) {
    const { publicKey, privateKey } = keyPairFor(algorithm);
    this.publicKey = publicKey;
    this.#privateKey = privateKey;
  }

  /** The next signatures fail with these, in order. */
  failNext(...errors: Error[]): void {
    this.#failures.push(...errors);
  }

  async signingKey(_keyId: string, algorithm: AssertionAlgorithm | undefined): Promise<SigningKey> {
    this.keyReads += 1;
    const members = publicJwkMembers(this.publicKey.export({ format: 'der', type: 'spki' }));
    const jwk = publicJwk(members, algorithm ?? this.algorithm);
    return { keyId: this.keyId, kid: jwk.kid, algorithm: jwk.alg, jwk };
  }

  async sign(key: SigningKey, signingInput: string): Promise<Uint8Array> {
    const failure = this.#failures.shift();
    if (failure) throw failure;
    this.signed.push(signingInput);
    return jwsSignature(key.algorithm, this.#privateKey, signingInput);
  }
}
