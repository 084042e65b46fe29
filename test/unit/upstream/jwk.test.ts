import { createHash, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  algorithmFits,
  defaultAlgorithmFor,
  derToJose,
  jwkThumbprint,
  publicJwk,
  publicJwkMembers,
} from '../../../functions/lib/upstream/jwk';

/** RFC 7638 section 3.1: the example RSA key and its thumbprint. */
const RFC7638_KEY = {
  kty: 'RSA' as const,
  n: '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw',
  e: 'AQAB',
};

describe('JWK thumbprint (RFC 7638)', () => {
  it("computes the RFC's own example", () => {
    expect(jwkThumbprint(RFC7638_KEY)).toBe('NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
  });

  it('hashes exactly the required EC members in lexicographic order, whatever else the JWK holds', () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const members = publicJwkMembers(publicKey.export({ format: 'der', type: 'spki' }));
    if (members.kty !== 'EC') throw new Error('expected an EC key');
    const canonical = `{"crv":"P-256","kty":"EC","x":"${members.x}","y":"${members.y}"}`;
    expect(jwkThumbprint(members)).toBe(createHash('sha256').update(canonical).digest('base64url'));
    const published = publicJwk(members, 'ES256');
    expect(published).toMatchObject({ kid: jwkThumbprint(members), alg: 'ES256', use: 'sig' });
    expect(jwkThumbprint(published)).toBe(published.kid); // kid, alg and use are not hashed
  });
});

describe('public keys from KMS (DER SubjectPublicKeyInfo)', () => {
  it('reads RSA and P-256 keys as the JWK node:crypto exports, and refuses other curves', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
    expect(publicJwkMembers(rsa.export({ format: 'der', type: 'spki' }))).toEqual({
      kty: 'RSA',
      n: rsa.export({ format: 'jwk' }).n,
      e: 'AQAB',
    });
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey;
    expect(() => publicJwkMembers(p384.export({ format: 'der', type: 'spki' }))).toThrow('only RSA and EC P-256');
  });

  it('defaults RSA specs to RS256 and P-256 to ES256, and fits each algorithm only to its key type', () => {
    expect(
      ['RSA_2048', 'RSA_3072', 'RSA_4096', 'ECC_NIST_P256', 'ECC_NIST_P384', 'HMAC_256', undefined].map(
        defaultAlgorithmFor,
      ),
    ).toEqual(['RS256', 'RS256', 'RS256', 'ES256', undefined, undefined, undefined]);
    const ec = { kty: 'EC', crv: 'P-256', x: 'x', y: 'y' } as const;
    expect(
      (['ES256', 'RS256', 'PS256'] as const).map((alg) => [algorithmFits(alg, ec), algorithmFits(alg, RFC7638_KEY)]),
    ).toEqual([
      [true, false],
      [false, true],
      [false, true],
    ]);
  });
});

describe('ECDSA signature from DER to JWS (r || s)', () => {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });

  it('converts any DER signature node:crypto makes into one that verifies as IEEE P1363', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (message) => {
        const der = sign('sha256', message, { key: privateKey, dsaEncoding: 'der' });
        const jose = derToJose(der);
        expect(jose).toHaveLength(64);
        expect(verify('sha256', message, { key: publicKey, dsaEncoding: 'ieee-p1363' }, jose)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('converts P-521 signatures too (size 66), whose DER length takes the long form 0x81', () => {
    const p521 = generateKeyPairSync('ec', { namedCurve: 'P-521' });
    const lengths = new Set<number>();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (message) => {
        const der = sign('sha256', message, { key: p521.privateKey, dsaEncoding: 'der' });
        lengths.add(der[1]!);
        const jose = derToJose(der, 66);
        expect(jose).toHaveLength(132);
        expect(verify('sha256', message, { key: p521.publicKey, dsaEncoding: 'ieee-p1363' }, jose)).toBe(true);
      }),
      { numRuns: 50 },
    );
    expect(lengths).toContain(0x81);
  });

  it('strips the sign byte of a high r, left-pads a short s', () => {
    const r = Buffer.alloc(32, 0xff);
    const s = Buffer.from([0x01, 0x02]);
    const der = Buffer.from([0x30, 2 + 33 + 2 + 2, 0x02, 33, 0x00, ...r, 0x02, 2, ...s]);
    expect(Buffer.from(derToJose(der)).toString('hex')).toBe(`${'ff'.repeat(32)}${'00'.repeat(30)}0102`);
  });

  it.each([
    ['empty', []],
    ['not a SEQUENCE', [0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]],
    ['a wrong length', [0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]],
    ['an integer too long', [0x30, 0x26, 0x02, 0x21, 0x01, ...Array(32).fill(1), 0x02, 0x01, 0x01]],
    ['trailing bytes', [0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00]],
    ['a missing s', [0x30, 0x03, 0x02, 0x01, 0x01]],
    ['trailing bytes inside the SEQUENCE', [0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00]],
    ['a zero-length integer', [0x30, 0x05, 0x02, 0x00, 0x02, 0x01, 0x01]],
    ['a length announced in two bytes (0x82)', [0x30, 0x82, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]],
  ])('refuses %s', (_name, bytes) => {
    expect(() => derToJose(Uint8Array.from(bytes))).toThrow('not a DER-encoded ECDSA signature');
  });

  it('refuses an indefinite length (0x80), even where 128 bytes of integers follow', () => {
    const der = [0x30, 0x80, 0x02, 64, ...Array(64).fill(1), 0x02, 60, ...Array(60).fill(1)];
    expect(der).toHaveLength(2 + 128);
    expect(() => derToJose(Uint8Array.from(der), 66)).toThrow('not a DER-encoded ECDSA signature');
  });

  it('publishes a JWK node:crypto imports back as the same public key', () => {
    const members = publicJwkMembers(publicKey.export({ format: 'der', type: 'spki' }));
    const imported = createPublicKey({ key: publicJwk(members, 'ES256'), format: 'jwk' });
    expect(imported.export({ format: 'der', type: 'spki' })).toEqual(publicKey.export({ format: 'der', type: 'spki' }));
  });
});
