/**
 * The signing key of a private_key_jwt client, in KMS (the way out): its public key read with GetPublicKey (cached
 * per container, checked fit for the algorithm) and each assertion signed with Sign, MessageType RAW (the signing
 * input is far below KMS's 4096-byte limit for a raw message, and KMS hashes it: no digest computed here). The
 * private key never leaves KMS; every signature is in CloudTrail.
 */
import { GetPublicKeyCommand, type KMSClient, SignCommand } from '@aws-sdk/client-kms';
import type { AssertionAlgorithm } from '../domain/settings';
import type { SigningKey } from '../domain/signing-key';
import type { AssertionSigner } from '../ports';
import { describeAwsError, isUnavailable } from '../shared/aws-errors';
import type { Clock } from '../shared/clock';
import { BrokerError, quote, UnavailableError } from '../shared/errors';
import { SingleFlight } from '../shared/single-flight';
import {
  algorithmFits,
  defaultAlgorithmFor,
  derToJose,
  KMS_SIGNING_ALGORITHMS,
  publicJwk,
  publicJwkMembers,
} from './jwk';

/** How long a container uses a public key before reading it again: an alias may have been moved to another key. */
export const PUBLIC_KEY_MAX_AGE_SEC = 300;

/**
 * Signs with KMS keys. A key is always signed with by its own id (the one GetPublicKey answered, its ARN), so the
 * `kid` of an assertion is the thumbprint of the key that signed it, even while an alias is being moved. While KMS is
 * unavailable, a public key read before is still used (it never changes): only Sign then fails.
 */
export class KmsAssertionSigner implements AssertionSigner {
  readonly #keys = new Map<string, { key: SigningKey; readAtMs: number }>();
  readonly #inFlight = new SingleFlight<string, SigningKey>();

  constructor(
    private readonly kms: KMSClient,
    private readonly clock: Clock,
    private readonly maxAgeSec = PUBLIC_KEY_MAX_AGE_SEC,
  ) {}

  async signingKey(keyId: string, algorithm: AssertionAlgorithm | undefined): Promise<SigningKey> {
    const id = `${keyId} ${algorithm ?? 'default'}`;
    const cached = this.#keys.get(id);
    if (cached && this.clock.nowMs() - cached.readAtMs < this.maxAgeSec * 1000) return cached.key;
    try {
      const key = await this.#inFlight.run(id, () => this.#read(keyId, algorithm));
      this.#keys.set(id, { key, readAtMs: this.clock.nowMs() });
      return key;
    } catch (err) {
      if (cached && err instanceof BrokerError && err.reason === 'signing_unavailable') return cached.key;
      throw err;
    }
  }

  async sign(key: SigningKey, signingInput: string): Promise<Uint8Array> {
    let signature: Uint8Array | undefined;
    try {
      ({ Signature: signature } = await this.kms.send(
        new SignCommand({
          KeyId: key.keyId,
          Message: Buffer.from(signingInput, 'ascii'),
          MessageType: 'RAW',
          SigningAlgorithm: KMS_SIGNING_ALGORITHMS[key.algorithm],
        }),
      ));
    } catch (err) {
      throw translateKmsError('Sign', key.keyId, err);
    }
    const garbled = (what: string) =>
      new UnavailableError(`KMS Sign answered ${what} for signing key ${quote(key.keyId, 256)}`, 'signing_unavailable');
    if (!signature || signature.length === 0) throw garbled('no signature');
    if (key.algorithm !== 'ES256') return signature;
    try {
      return derToJose(signature);
    } catch {
      throw garbled('a signature that is not DER-encoded ECDSA');
    }
  }

  async #read(keyId: string, algorithm: AssertionAlgorithm | undefined): Promise<SigningKey> {
    let answer;
    try {
      answer = await this.kms.send(new GetPublicKeyCommand({ KeyId: keyId }));
    } catch (err) {
      throw translateKmsError('GetPublicKey', keyId, err);
    }
    const { KeyId: answeredKeyId, KeyUsage: usage, PublicKey: spki, SigningAlgorithms: algorithms } = answer;
    // KeySpec; CustomerMasterKeySpec is its deprecated twin, which some KMS emulations (moto) answer alone.
    const keySpec = answer.KeySpec ?? answer.CustomerMasterKeySpec;
    const unusable = (what: string) =>
      new UnavailableError(`signing key ${quote(keyId, 256)} ${what}`, 'signing_key_unusable');
    if (usage !== 'SIGN_VERIFY') throw unusable(`is not a signing key (KeyUsage ${String(usage)})`);
    if (!answeredKeyId || !spki) throw unusable('has no public key in its GetPublicKey answer');
    const chosen = algorithm ?? defaultAlgorithmFor(keySpec);
    if (!chosen)
      throw unusable(`has key spec ${String(keySpec)}: JWS needs RSA_2048, RSA_3072, RSA_4096 or ECC_NIST_P256`);
    let members;
    try {
      members = publicJwkMembers(spki);
    } catch {
      throw unusable(`has a public key that is not RSA or EC P-256 (key spec ${String(keySpec)})`);
    }
    if (!algorithmFits(chosen, members) || !(algorithms ?? []).includes(KMS_SIGNING_ALGORITHMS[chosen])) {
      throw unusable(`cannot sign ${chosen} (key spec ${String(keySpec)}): check signingAlgorithm`);
    }
    const jwk = publicJwk(members, chosen);
    return { keyId: answeredKeyId, kid: jwk.kid, algorithm: chosen, jwk };
  }
}

/**
 * KMS down, slow or throttling: `signing_unavailable`, worth another attempt. Anything else KMS refuses (access
 * denied, a disabled key, a key pending deletion, not found, wrong usage): `signing_key_unusable`, not retried. Both
 * answer 503 (a still-valid cached token first): the broker is fine, its key is not, until someone fixes it.
 */
const translateKmsError = (operation: 'Sign' | 'GetPublicKey', keyId: string, err: unknown): UnavailableError => {
  const key = quote(keyId, 256);
  const what = describeAwsError(err);
  return isUnavailable(err)
    ? new UnavailableError(
        `KMS is unavailable for ${operation} with signing key ${key}: ${what}`,
        'signing_unavailable',
        {
          cause: err,
        },
      )
    : new UnavailableError(`KMS refused ${operation} with signing key ${key}: ${what}`, 'signing_key_unusable', {
        cause: err,
      });
};
