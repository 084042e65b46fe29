import { constants, createPublicKey, verify } from 'node:crypto';
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { ClientCredentials } from '../../../functions/lib/domain/client-credentials';
import type { AssertionAlgorithm } from '../../../functions/lib/domain/settings';
import {
  ASSERTION_LIFETIME_SEC,
  CLIENT_ASSERTION_TYPE,
  clientSecretBasic,
  formUrlEncode,
  privateKeyJwt,
  secretAuthentication,
} from '../../../functions/lib/upstream/client-auth';
import { tokenRequest } from '../../../functions/lib/upstream/token-endpoint';
import { KeySigner } from '../../support/fakes/key-signer';

const NOW_SEC = 1_796_000_000;
const part = (jwt: string, i: number) => JSON.parse(Buffer.from(jwt.split('.')[i]!, 'base64url').toString('utf8'));

describe('client_secret_basic (RFC 6749 section 2.3.1)', () => {
  it('form-urlencodes id and secret before base64 (":", "%", "+", space, non-ASCII)', () => {
    expect(formUrlEncode('a:b%c+d e/é~*')).toBe('a%3Ab%25c%2Bd+e%2F%C3%A9%7E*');
    const auth = clientSecretBasic(new ClientCredentials('s', 'partner:id', 'p%ss+wörd:', 'v1'));
    const { body, headers } = tokenRequest(auth, ['a']);
    const basic = Buffer.from(headers.authorization!.replace(/^Basic /, ''), 'base64').toString('utf8');
    expect(basic).toBe('partner%3Aid:p%25ss%2Bw%C3%B6rd%3A');
    // What a server does (split at the first ":", then form-decode each part) gives them back.
    const [id, secret] = [basic.slice(0, basic.indexOf(':')), basic.slice(basic.indexOf(':') + 1)];
    expect([id, secret].map((p) => decodeURIComponent(p.replace(/\+/g, ' ')))).toEqual(['partner:id', 'p%ss+wörd:']);
    expect(Object.fromEntries(new URLSearchParams(body))).toEqual({ grant_type: 'client_credentials', scope: 'a' });
  });

  it('keeps the credentials out of JSON and inspection', () => {
    const auth = clientSecretBasic(new ClientCredentials('s', 'id', 'hunter2hunter2', 'v1'));
    expect(JSON.stringify(auth)).toBe('{"method":"client_secret_basic"}');
    expect(inspect(auth, { showHidden: true, depth: 5 })).not.toContain(
      Buffer.from('id:hunter2hunter2').toString('base64'),
    );
  });
});

describe('secretAuthentication: the method the client is configured with', () => {
  const credentials = new ClientCredentials('s', 'id', 'hunter2hunter2', 'v1');
  const sent = (method: 'client_secret_post' | 'client_secret_basic') => {
    const auth = secretAuthentication({ method, secretId: 's' }, credentials);
    const { body, headers } = tokenRequest(auth, ['a']);
    return { method: auth.method, form: Object.fromEntries(new URLSearchParams(body)), headers };
  };

  it('client_secret_basic: an Authorization header, nothing of the credentials in the body', () => {
    const { method, form, headers } = sent('client_secret_basic');
    expect(method).toBe('client_secret_basic');
    expect(headers.authorization).toBe(`Basic ${Buffer.from('id:hunter2hunter2').toString('base64')}`);
    expect(form).toEqual({ grant_type: 'client_credentials', scope: 'a' });
  });

  it('client_secret_post: id and secret in the body, no Authorization header', () => {
    const { method, form, headers } = sent('client_secret_post');
    expect(method).toBe('client_secret_post');
    expect(headers.authorization).toBeUndefined();
    expect(form).toEqual({
      grant_type: 'client_credentials',
      client_id: 'id',
      client_secret: 'hunter2hunter2',
      scope: 'a',
    });
  });
});

describe.each(['RS256', 'PS256', 'ES256'] as const)('private_key_jwt, %s', (algorithm: AssertionAlgorithm) => {
  const assertionOf = async (signer: KeySigner) => {
    const key = await signer.signingKey(signer.keyId, algorithm);
    const { body } = tokenRequest(await privateKeyJwt('partner', 'https://idp.example/token', key, signer, NOW_SEC), [
      'a',
    ]);
    return { key, form: new URLSearchParams(body) };
  };

  it('sends a JWS that verifies with the published key, with the claims RFC 7523 asks for', async () => {
    const signer = new KeySigner(algorithm);
    const { key, form } = await assertionOf(signer);
    expect(form.get('client_assertion_type')).toBe(CLIENT_ASSERTION_TYPE);
    expect(form.get('client_id')).toBe('partner');
    expect(form.get('client_secret')).toBeNull();
    const jwt = form.get('client_assertion')!;
    expect(part(jwt, 0)).toEqual({ alg: algorithm, typ: 'JWT', kid: key.kid });
    expect(part(jwt, 1)).toEqual({
      iss: 'partner',
      sub: 'partner',
      aud: 'https://idp.example/token',
      iat: NOW_SEC,
      exp: NOW_SEC + ASSERTION_LIFETIME_SEC,
      jti: expect.stringMatching(/^[0-9a-f-]{36}$/),
    });
    expect(ASSERTION_LIFETIME_SEC).toBeLessThanOrEqual(300);
    const [header, payload, signature] = jwt.split('.');
    const publicKey = createPublicKey({ key: key.jwk, format: 'jwk' });
    const options =
      algorithm === 'ES256'
        ? { key: publicKey, dsaEncoding: 'ieee-p1363' as const }
        : algorithm === 'PS256'
          ? { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }
          : publicKey;
    expect(verify('sha256', Buffer.from(`${header}.${payload}`), options, Buffer.from(signature!, 'base64url'))).toBe(
      true,
    );
  });

  it('uses a new jti for every assertion', async () => {
    const signer = new KeySigner(algorithm);
    const jtis = new Set<string>();
    for (let i = 0; i < 20; i++) jtis.add(part((await assertionOf(signer)).form.get('client_assertion')!, 1).jti);
    expect(jtis.size).toBe(20);
  });
});
