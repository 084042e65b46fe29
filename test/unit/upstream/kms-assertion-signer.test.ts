import { constants, generateKeyPairSync, type KeyObject, sign, verify } from 'node:crypto';
import { GetPublicKeyCommand, type KMSClient, type SignCommand } from '@aws-sdk/client-kms';
import { describe, expect, it } from 'vitest';
import { KmsAssertionSigner, PUBLIC_KEY_MAX_AGE_SEC } from '../../../functions/lib/upstream/kms-assertion-signer';

/**
 * KmsAssertionSigner against a fake KMS client that answers GetPublicKey and Sign as KMS does (node:crypto keys,
 * ECDSA signatures in DER) or fails as the SDK does (an error with a name and an HTTP status): what it asks KMS,
 * what it caches, how each failure is classified.
 */
const ARN = 'arn:aws:kms:eu-west-1:111111111111:key/11111111-2222-3333-4444-555555555555';
const ALIAS = 'arn:aws:kms:eu-west-1:111111111111:alias/partner-signing';

const sdkError = (name: string, httpStatusCode?: number) =>
  Object.assign(new Error(`${name}: message that may quote the request`), {
    name,
    $metadata: httpStatusCode === undefined ? {} : { httpStatusCode },
  });

const fakeKms = (spec: 'RSA_2048' | 'ECC_NIST_P256') => {
  const { publicKey, privateKey } =
    spec === 'RSA_2048'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const calls: { command: string; input: Record<string, unknown> }[] = [];
  const failures: Error[] = [];
  const answer: Record<string, unknown> = {};
  const client = {
    send: async (command: GetPublicKeyCommand | SignCommand) => {
      const input = command.input as unknown as Record<string, unknown>;
      calls.push({ command: command.constructor.name, input });
      const failure = failures.shift();
      if (failure) throw failure;
      if (command instanceof GetPublicKeyCommand)
        return {
          KeyId: ARN,
          KeySpec: spec,
          KeyUsage: 'SIGN_VERIFY',
          PublicKey: publicKey.export({ format: 'der', type: 'spki' }),
          SigningAlgorithms:
            spec === 'RSA_2048' ? ['RSASSA_PKCS1_V1_5_SHA_256', 'RSASSA_PSS_SHA_256'] : ['ECDSA_SHA_256'],
          ...answer,
        };
      const message = command.input.Message as Uint8Array;
      const algorithm = command.input.SigningAlgorithm;
      const signature =
        algorithm === 'ECDSA_SHA_256'
          ? sign('sha256', message, { key: privateKey, dsaEncoding: 'der' })
          : algorithm === 'RSASSA_PSS_SHA_256'
            ? sign('sha256', message, { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 })
            : sign('sha256', message, privateKey);
      return { KeyId: ARN, Signature: answer.Signature ?? signature, SigningAlgorithm: algorithm };
    },
  };
  return { kms: client as unknown as KMSClient, calls, failures, answer, publicKey };
};

const clockAt = (start = 1_000_000) => {
  let nowMs = start;
  return {
    nowMs: () => nowMs,
    advance: (ms: number) => {
      nowMs += ms;
    },
  };
};

const verifies = (publicKey: KeyObject, alg: string, input: string, signature: Uint8Array) =>
  verify(
    'sha256',
    Buffer.from(input),
    alg === 'ES256'
      ? { key: publicKey, dsaEncoding: 'ieee-p1363' }
      : alg === 'PS256'
        ? { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }
        : publicKey,
    signature,
  );

describe('KmsAssertionSigner', () => {
  it.each([
    ['RSA_2048', undefined, 'RS256', 'RSASSA_PKCS1_V1_5_SHA_256'],
    ['RSA_2048', 'PS256', 'PS256', 'RSASSA_PSS_SHA_256'],
    ['ECC_NIST_P256', undefined, 'ES256', 'ECDSA_SHA_256'],
  ] as const)(
    'signs with a %s key as %s -> %s: Sign, RAW, by the key GetPublicKey named, in the JWS form',
    async (spec, configured, alg, kmsAlgorithm) => {
      const fake = fakeKms(spec);
      const signer = new KmsAssertionSigner(fake.kms, clockAt());
      const key = await signer.signingKey(ALIAS, configured);
      expect(key).toMatchObject({ keyId: ARN, algorithm: alg, jwk: { alg, use: 'sig', kid: key.kid } });
      const signature = await signer.sign(key, 'header.payload');
      expect(fake.calls.map((c) => [c.command, c.input.KeyId])).toEqual([
        ['GetPublicKeyCommand', ALIAS],
        ['SignCommand', ARN],
      ]);
      expect(fake.calls[1]!.input).toMatchObject({ MessageType: 'RAW', SigningAlgorithm: kmsAlgorithm });
      expect(Buffer.from(fake.calls[1]!.input.Message as Uint8Array).toString()).toBe('header.payload');
      expect(verifies(fake.publicKey, alg, 'header.payload', signature)).toBe(true);
    },
  );

  it('reads a public key once per container, and again after PUBLIC_KEY_MAX_AGE_SEC (an alias may have moved)', async () => {
    const fake = fakeKms('ECC_NIST_P256');
    const clock = clockAt();
    const signer = new KmsAssertionSigner(fake.kms, clock);
    await Promise.all([signer.signingKey(ALIAS, undefined), signer.signingKey(ALIAS, undefined)]);
    clock.advance(PUBLIC_KEY_MAX_AGE_SEC * 1000 - 1);
    await signer.signingKey(ALIAS, undefined);
    expect(fake.calls.filter((c) => c.command === 'GetPublicKeyCommand')).toHaveLength(1);
    clock.advance(1);
    await signer.signingKey(ALIAS, undefined);
    expect(fake.calls.filter((c) => c.command === 'GetPublicKeyCommand')).toHaveLength(2);
  });

  it('keeps a public key per key and per algorithm: another algorithm or key is read, not answered from the first', async () => {
    const fake = fakeKms('RSA_2048');
    const signer = new KmsAssertionSigner(fake.kms, clockAt());
    expect((await signer.signingKey(ARN, 'RS256')).algorithm).toBe('RS256');
    expect((await signer.signingKey(ARN, 'PS256')).algorithm).toBe('PS256');
    expect((await signer.signingKey(ARN, undefined)).algorithm).toBe('RS256');
    await signer.signingKey(ALIAS, 'PS256');
    expect(fake.calls.map((c) => c.input.KeyId)).toEqual([ARN, ARN, ARN, ALIAS]);
    await signer.signingKey(ARN, 'PS256');
    expect(fake.calls).toHaveLength(4);
  });

  it('keeps using a public key read before while KMS is unavailable, but not one KMS refuses', async () => {
    const fake = fakeKms('ECC_NIST_P256');
    const clock = clockAt();
    const signer = new KmsAssertionSigner(fake.kms, clock);
    const key = await signer.signingKey(ALIAS, undefined);
    clock.advance(PUBLIC_KEY_MAX_AGE_SEC * 1000);
    fake.failures.push(sdkError('KMSInternalException', 500));
    expect(await signer.signingKey(ALIAS, undefined)).toEqual(key);
    fake.failures.push(sdkError('DisabledException', 400));
    await expect(signer.signingKey(ALIAS, undefined)).rejects.toMatchObject({ reason: 'signing_key_unusable' });
  });

  it.each([
    ['ThrottlingException', 400, 'signing_unavailable', 'KMS is unavailable for Sign'],
    ['KMSInternalException', 500, 'signing_unavailable', 'KMS is unavailable for Sign'],
    ['TimeoutError', undefined, 'signing_unavailable', 'KMS is unavailable for Sign'],
    ['AccessDeniedException', 400, 'signing_key_unusable', 'KMS refused Sign'],
    ['DisabledException', 400, 'signing_key_unusable', 'KMS refused Sign'],
    ['KMSInvalidStateException', 400, 'signing_key_unusable', 'KMS refused Sign'],
    ['NotFoundException', 400, 'signing_key_unusable', 'KMS refused Sign'],
  ])(
    'answers %s from Sign (HTTP %s) as %s (503), naming the key and the error, never its message',
    async (name, status, reason, words) => {
      const fake = fakeKms('RSA_2048');
      const signer = new KmsAssertionSigner(fake.kms, clockAt());
      const key = await signer.signingKey(ARN, undefined);
      fake.failures.push(sdkError(name, status));
      const err = await signer.sign(key, 'h.p').catch((e: unknown) => e);
      expect(err).toMatchObject({ reason, status: 503, error: 'temporarily_unavailable' });
      expect((err as Error).message).toBe(
        `${words} with signing key "${ARN}": ${name}${status === undefined ? '' : ` (HTTP ${status})`}`,
      );
    },
  );

  it.each([
    ['an encryption key', { KeyUsage: 'ENCRYPT_DECRYPT' }, 'RS256', 'is not a signing key (KeyUsage ENCRYPT_DECRYPT)'],
    ['ES256 with an RSA key', {}, 'ES256', 'cannot sign ES256 (key spec RSA_2048)'],
    ['a key spec JWS cannot use', { KeySpec: 'ECC_SECG_P256K1' }, undefined, 'has key spec ECC_SECG_P256K1'],
    [
      'an algorithm KMS does not list for the key',
      { SigningAlgorithms: ['RSASSA_PKCS1_V1_5_SHA_256'] },
      'PS256',
      'cannot sign PS256 (key spec RSA_2048)',
    ],
    [
      'an answer without a public key',
      { PublicKey: undefined },
      undefined,
      'has no public key in its GetPublicKey answer',
    ],
    [
      'a public key on another curve',
      {
        KeySpec: 'ECC_NIST_P384',
        PublicKey: generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ format: 'der', type: 'spki' }),
      },
      'ES256',
      'has a public key that is not RSA or EC P-256 (key spec ECC_NIST_P384)',
    ],
  ] as const)('refuses %s as signing_key_unusable', async (_name, answer, alg, words) => {
    const fake = fakeKms('RSA_2048');
    Object.assign(fake.answer, answer);
    const signer = new KmsAssertionSigner(fake.kms, clockAt());
    await expect(signer.signingKey(ARN, alg)).rejects.toMatchObject({
      reason: 'signing_key_unusable',
      message: expect.stringContaining(words),
    });
  });

  it('refuses an empty Sign answer as signing_unavailable rather than sending an assertion without a signature', async () => {
    const fake = fakeKms('RSA_2048');
    const signer = new KmsAssertionSigner(fake.kms, clockAt());
    const key = await signer.signingKey(ARN, undefined);
    fake.answer.Signature = new Uint8Array(0);
    await expect(signer.sign(key, 'h.p')).rejects.toMatchObject({
      reason: 'signing_unavailable',
      message: `KMS Sign answered no signature for signing key "${ARN}"`,
    });
  });

  it("answers moto's GetPublicKey too (CustomerMasterKeySpec only), and refuses an ECDSA signature that is not DER", async () => {
    const fake = fakeKms('ECC_NIST_P256');
    Object.assign(fake.answer, { KeySpec: undefined, CustomerMasterKeySpec: 'ECC_NIST_P256' });
    const signer = new KmsAssertionSigner(fake.kms, clockAt());
    const key = await signer.signingKey(ARN, undefined);
    expect(key.algorithm).toBe('ES256');
    fake.answer.Signature = Uint8Array.from([1, 2, 3]);
    await expect(signer.sign(key, 'h.p')).rejects.toMatchObject({
      reason: 'signing_unavailable',
      message: expect.stringContaining('not DER-encoded ECDSA'),
    });
  });
});
