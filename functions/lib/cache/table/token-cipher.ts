/**
 * Envelope encryption of cached tokens: AES-256-GCM under a data key from KMS `GenerateDataKey`. The wrapped
 * data key is stored with the item; plaintext data keys live in memory per container for at most
 * `dataKeyMaxAgeSec`. Data keys are generated and unwrapped under an encryption context naming the table the item
 * lives in, so an item copied into another stage's table (sharing the key) does not decrypt there, and IAM
 * conditions on the context hold each role to its own table. The caller binds the item's fields in as additional
 * authenticated data, so an item with a field changed, or ciphertext moved onto another item, does not decrypt.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { DecryptCommand, GenerateDataKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { describeAwsError } from '../../shared/aws-errors';
import type { Clock } from '../../shared/clock';
import { UnavailableError } from '../../shared/errors';
import { SingleFlight } from '../../shared/single-flight';

export interface SealedToken {
  /** version (1 byte) | IV (12 bytes) | ciphertext | GCM tag (16 bytes) */
  ciphertext: Uint8Array;
  wrappedDataKey: Uint8Array;
}

/** A sealed token that cannot be opened: tampered, moved, or its data key cannot be unwrapped. */
export class TokenDecryptError extends Error {
  constructor(
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`cached token could not be decrypted: ${reason}`, options);
    this.name = 'TokenDecryptError';
  }
}

const FORMAT_VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** The KMS encryption context of a table's data keys: infra/iam.yml and infra/kms.yml condition on each entry. */
export const encryptionContextFor = (tableName: string): Record<string, string> => ({
  purpose: 'limitrail-token-broker/token-cache',
  tokenTable: tableName,
});
const MAX_UNWRAPPED_KEYS = 64;

interface DataKey {
  plaintext: Buffer;
  wrapped: Uint8Array;
  createdAtMs: number;
}

export class TokenCipher {
  /** Per table: the data key for sealing, and its generation in flight. */
  readonly #encryptionKeys = new Map<string, DataKey>();
  readonly #generating = new SingleFlight<string, DataKey>();
  /** Unwrapped data keys by table and wrapped key: a key unwrapped for one table never opens another's item. */
  readonly #unwrapped = new Map<string, DataKey>();

  constructor(
    private readonly kms: KMSClient,
    private readonly keyId: string,
    private readonly clock: Clock,
    private readonly dataKeyMaxAgeSec: number,
  ) {}

  /** Seals a token for an item of `tableName` (the encryption context), bound to `aad`. */
  async seal(plaintext: string, aad: string, tableName: string): Promise<SealedToken> {
    const key = await this.#currentEncryptionKey(tableName);
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key.plaintext, iv);
    cipher.setAAD(Buffer.from(aad, 'utf8'));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return {
      ciphertext: Buffer.concat([Buffer.of(FORMAT_VERSION), iv, body, cipher.getAuthTag()]),
      wrappedDataKey: key.wrapped,
    };
  }

  async open(sealed: SealedToken, aad: string, tableName: string): Promise<string> {
    const { ciphertext } = sealed;
    if (ciphertext.length < 1 + IV_BYTES + TAG_BYTES || ciphertext[0] !== FORMAT_VERSION) {
      throw new TokenDecryptError('unknown format');
    }
    const key = await this.#unwrap(sealed.wrappedDataKey, tableName);
    const bytes = Buffer.from(ciphertext);
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(1, 1 + IV_BYTES));
      decipher.setAAD(Buffer.from(aad, 'utf8'));
      decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
      const body = bytes.subarray(1 + IV_BYTES, bytes.length - TAG_BYTES);
      return Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
    } catch (err) {
      throw new TokenDecryptError('authentication failed', { cause: err });
    }
  }

  #isFresh(key: DataKey): boolean {
    return this.clock.nowMs() - key.createdAtMs < this.dataKeyMaxAgeSec * 1000;
  }

  /** The current data key for sealing; renewed after `dataKeyMaxAgeSec`, one GenerateDataKey at a time. */
  #currentEncryptionKey(tableName: string): Promise<DataKey> {
    const key = this.#encryptionKeys.get(tableName);
    if (key && this.#isFresh(key)) return Promise.resolve(key);
    return this.#generating.run(tableName, async () => {
      const fresh = await this.#generate(tableName);
      this.#encryptionKeys.set(tableName, fresh);
      return fresh;
    });
  }

  async #generate(tableName: string): Promise<DataKey> {
    try {
      const out = await this.kms.send(
        new GenerateDataKeyCommand({
          KeyId: this.keyId,
          KeySpec: 'AES_256',
          EncryptionContext: encryptionContextFor(tableName),
        }),
      );
      if (!out.Plaintext || !out.CiphertextBlob) throw new Error('GenerateDataKey returned no key');
      const key = {
        plaintext: Buffer.from(out.Plaintext),
        wrapped: out.CiphertextBlob,
        createdAtMs: this.clock.nowMs(),
      };
      this.#remember(key, tableName);
      return key;
    } catch (err) {
      throw new UnavailableError(`KMS could not generate a data key: ${describeAwsError(err)}`, 'kms_unavailable', {
        cause: err,
      });
    }
  }

  #remember(key: DataKey, tableName: string): void {
    const id = unwrappedId(key.wrapped, tableName);
    this.#unwrapped.delete(id);
    this.#unwrapped.set(id, key);
    while (this.#unwrapped.size > MAX_UNWRAPPED_KEYS)
      this.#unwrapped.delete(this.#unwrapped.keys().next().value as string);
  }

  async #unwrap(wrapped: Uint8Array, tableName: string): Promise<Buffer> {
    const known = this.#unwrapped.get(unwrappedId(wrapped, tableName));
    if (known && this.#isFresh(known)) return known.plaintext;
    try {
      const out = await this.kms.send(
        new DecryptCommand({
          KeyId: this.keyId,
          CiphertextBlob: wrapped,
          EncryptionContext: encryptionContextFor(tableName),
        }),
      );
      if (!out.Plaintext) throw new Error('Decrypt returned no key');
      const key = { plaintext: Buffer.from(out.Plaintext), wrapped, createdAtMs: this.clock.nowMs() };
      this.#remember(key, tableName);
      return key.plaintext;
    } catch (err) {
      throw new TokenDecryptError(`data key not unwrapped: ${describeAwsError(err)}`, { cause: err });
    }
  }
}

const unwrappedId = (wrapped: Uint8Array, tableName: string): string =>
  `${tableName}\n${Buffer.from(wrapped).toString('base64')}`;
