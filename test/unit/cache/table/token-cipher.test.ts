import { randomBytes } from 'node:crypto';
import { DecryptCommand, GenerateDataKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { describe, expect, it } from 'vitest';
import {
  encryptionContextFor,
  TokenCipher,
  TokenDecryptError,
} from '../../../../functions/lib/cache/table/token-cipher';

/**
 * Envelope encryption (token-cipher.ts) with a fake KMS at the I/O edge that counts its calls and hands out a new data
 * key per GenerateDataKey, and a fake clock: how long a data key is used and kept, and what cannot be opened.
 */
const TABLE = 'tokens';
const MAX_AGE_SEC = 300;
const START_MS = Date.parse('2026-11-29T06:00:00Z');

const setup = () => {
  let nowMs = START_MS;
  const clock = { nowMs: () => nowMs };
  const keys = new Map<string, Buffer>(); // wrapped (hex) -> plaintext
  const calls = { generate: 0, decrypt: 0 };
  let decryptFails = false;
  const kms = {
    send: async (command: unknown) => {
      if (command instanceof GenerateDataKeyCommand) {
        calls.generate += 1;
        const plaintext = randomBytes(32);
        const wrapped = randomBytes(48);
        keys.set(wrapped.toString('hex'), plaintext);
        return { Plaintext: plaintext, CiphertextBlob: wrapped };
      }
      if (command instanceof DecryptCommand) {
        calls.decrypt += 1;
        const { CiphertextBlob, EncryptionContext } = command.input;
        const plaintext = keys.get(Buffer.from(CiphertextBlob!).toString('hex'));
        if (decryptFails || !plaintext || EncryptionContext?.tokenTable !== TABLE) {
          throw Object.assign(new Error('invalid ciphertext'), { name: 'InvalidCiphertextException' });
        }
        expect(EncryptionContext).toEqual(encryptionContextFor(TABLE));
        return { Plaintext: plaintext };
      }
      throw new Error(`the fake KMS does not do ${(command as object).constructor.name}`);
    },
  } as unknown as KMSClient;
  /** A container's cipher: its own data keys in memory, the one KMS. */
  const container = () => new TokenCipher(kms, 'alias/broker', clock, MAX_AGE_SEC);
  return {
    container,
    calls,
    advance: (ms: number) => (nowMs += ms),
    failDecrypts: () => (decryptFails = true),
  };
};

const decryptError = async (pending: Promise<unknown>) => {
  const err = await pending.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TokenDecryptError);
  return err as TokenDecryptError;
};

describe('data keys', () => {
  it('seals with one data key until it is DATA_KEY_MAX_AGE_SEC old, then generates another', async () => {
    const t = setup();
    const cipher = t.container();
    const first = await cipher.seal('token-1', 'aad', TABLE);
    t.advance(MAX_AGE_SEC * 1000 - 1);
    const second = await cipher.seal('token-2', 'aad', TABLE);
    expect(t.calls.generate).toBe(1);
    expect(second.wrappedDataKey).toEqual(first.wrappedDataKey);
    t.advance(1);
    const third = await cipher.seal('token-3', 'aad', TABLE);
    expect(t.calls.generate).toBe(2);
    expect(third.wrappedDataKey).not.toEqual(first.wrappedDataKey);
  });

  it('keeps an unwrapped data key in memory until it is DATA_KEY_MAX_AGE_SEC old, then asks KMS again', async () => {
    const t = setup();
    const sealed = await t.container().seal('token-1', 'aad', TABLE);
    const reader = t.container(); // another container: it has to unwrap the key
    expect(await reader.open(sealed, 'aad', TABLE)).toBe('token-1');
    t.advance(MAX_AGE_SEC * 1000 - 1);
    expect(await reader.open(sealed, 'aad', TABLE)).toBe('token-1');
    expect(t.calls.decrypt).toBe(1);
    t.advance(1);
    expect(await reader.open(sealed, 'aad', TABLE)).toBe('token-1');
    expect(t.calls.decrypt).toBe(2);
  });

  it('opens what it sealed itself without asking KMS', async () => {
    const t = setup();
    const cipher = t.container();
    expect(await cipher.open(await cipher.seal('token-1', 'aad', TABLE), 'aad', TABLE)).toBe('token-1');
    expect(t.calls.decrypt).toBe(0);
  });
});

describe('unwrapped data keys in memory', () => {
  it('keeps the 64 most recently unwrapped, then forgets the oldest', async () => {
    const t = setup();
    // 65 containers, each sealing with a data key of its own.
    const sealed = await Promise.all(
      Array.from({ length: 65 }, (_, i) => t.container().seal(`token-${i}`, 'aad', TABLE)),
    );
    const reader = t.container();
    for (const [i, s] of sealed.slice(0, 64).entries()) expect(await reader.open(s, 'aad', TABLE)).toBe(`token-${i}`);
    expect(t.calls.decrypt).toBe(64);
    expect(await reader.open(sealed[0]!, 'aad', TABLE)).toBe('token-0'); // still kept: no KMS call
    expect(t.calls.decrypt).toBe(64);
    expect(await reader.open(sealed[64]!, 'aad', TABLE)).toBe('token-64');
    expect(t.calls.decrypt).toBe(65);
    expect(await reader.open(sealed[0]!, 'aad', TABLE)).toBe('token-0'); // forgotten: unwrapped again
    expect(t.calls.decrypt).toBe(66);
  });

  it("never opens another table's item with a key unwrapped for this one, nor one item's key for another's", async () => {
    const t = setup();
    const writer = t.container();
    const first = await writer.seal('token-1', 'aad', TABLE);
    const reader = t.container();
    expect(await reader.open(first, 'aad', TABLE)).toBe('token-1');
    // The same item copied into another stage's table: KMS is asked under that table's context, and refuses.
    const copied = await decryptError(reader.open(first, 'aad', 'tokens-other-stage'));
    expect(copied.reason).toMatch(/^data key not unwrapped/);
    // An item sealed under another data key is unwrapped on its own.
    const second = await t.container().seal('token-2', 'aad', TABLE);
    expect(await reader.open(second, 'aad', TABLE)).toBe('token-2');
    expect(t.calls.decrypt).toBe(3);
  });
});

describe('what does not open', () => {
  it('refuses a ciphertext of another format version, or too short to hold one, without asking KMS', async () => {
    const t = setup();
    const cipher = t.container();
    const sealed = await cipher.seal('token-1', 'aad', TABLE);
    const otherVersion = Buffer.from(sealed.ciphertext);
    otherVersion[0] = 2;
    const reader = t.container();
    for (const ciphertext of [otherVersion, Buffer.from(sealed.ciphertext).subarray(0, 1 + 12 + 16 - 1)]) {
      const err = await decryptError(reader.open({ ...sealed, ciphertext }, 'aad', TABLE));
      expect(err.reason).toBe('unknown format');
      expect(err.message).toBe('cached token could not be decrypted: unknown format');
      expect(err.name).toBe('TokenDecryptError');
    }
    expect(t.calls.decrypt).toBe(0);
    // The shortest well-formed ciphertext (an empty token: version, IV and tag only) is not refused for its length.
    const empty = await cipher.seal('', 'aad', TABLE);
    expect(empty.ciphertext).toHaveLength(1 + 12 + 16);
    expect(await cipher.open(empty, 'aad', TABLE)).toBe('');
  });

  it('refuses a token bound to other additional data, or with a flipped byte, keeping the cause', async () => {
    const t = setup();
    const cipher = t.container();
    const sealed = await cipher.seal('token-1', 'aad', TABLE);
    const flipped = Buffer.from(sealed.ciphertext);
    flipped[20] = (flipped[20] ?? 0) ^ 1;
    for (const [ciphertext, aad] of [
      [sealed.ciphertext, 'other aad'],
      [flipped, 'aad'],
    ] as const) {
      const err = await decryptError(cipher.open({ ...sealed, ciphertext }, aad, TABLE));
      expect(err.reason).toBe('authentication failed');
      expect(err.cause).toBeInstanceOf(Error);
    }
  });

  it("refuses a token whose data key KMS does not unwrap (another table's context, a revoked key), naming the error", async () => {
    const t = setup();
    const sealed = await t.container().seal('token-1', 'aad', TABLE);
    const otherTable = await decryptError(t.container().open(sealed, 'aad', 'tokens-other-stage'));
    expect(otherTable.reason).toMatch(/^data key not unwrapped: InvalidCiphertextException/);
    expect(otherTable.cause).toMatchObject({ name: 'InvalidCiphertextException' });
    t.failDecrypts();
    const revoked = await decryptError(t.container().open(sealed, 'aad', TABLE));
    expect(revoked.reason).toMatch(/^data key not unwrapped/);
  });
});
