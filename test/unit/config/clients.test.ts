import { describe, expect, it } from 'vitest';
import { parseClients } from '../../../functions/lib/config/clients';
import { BrokerError } from '../../../functions/lib/shared/errors';

const KEY = (n: number) => `arn:aws:kms:eu-west-1:111111111111:key/1111111${n}-2222-3333-4444-555555555555`;
const secretClient = { secretId: 's', tokenUrl: 'https://auth.example.com/connect/token', scopes: ['a'] };
const jwtClient = {
  authMethod: 'private_key_jwt',
  clientId: 'partner-id',
  signingKeyId: KEY(1),
  tokenUrl: 'https://auth.example.com/connect/token',
  scopes: ['a'],
};

const parse = (client: Record<string, unknown>, name = 'partner') =>
  parseClients(JSON.stringify({ [name]: client }), false).get(name)!;

/** The configuration error a client raises: its description, after checking it is a 500 config_invalid. */
const problem = (client: Record<string, unknown>, name = 'partner'): string => {
  try {
    parseClients(JSON.stringify({ [name]: client }), false);
  } catch (err) {
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).reason).toBe('config_invalid');
    const body = (err as BrokerError).toOAuth();
    expect(body).toMatchObject({ error: 'server_error', status: 500 });
    return body.error_description;
  }
  throw new Error('expected a configuration error');
};

describe('parseClients: each refusal names the client, the field and what it must be', () => {
  it.each([
    [
      'a missing token URL',
      { ...secretClient, tokenUrl: undefined },
      'BROKER_CLIENTS.partner.tokenUrl must be a string',
    ],
    [
      'a clientId with a space',
      { ...secretClient, clientId: 'partner id' },
      'BROKER_CLIENTS.partner.clientId must be a non-empty string without spaces',
    ],
    [
      'a scope that is not a scope token',
      { ...secretClient, scopes: ['a', 'b"c'] },
      'BROKER_CLIENTS.partner.scopes[1] must be an RFC 6749 scope token',
    ],
    [
      'a missing secretId',
      { ...secretClient, secretId: undefined },
      'BROKER_CLIENTS.partner.secretId must be a non-empty secret name or ARN',
    ],
    [
      'an assertion audience with a space',
      { ...jwtClient, assertionAudience: 'my idp' },
      'BROKER_CLIENTS.partner.assertionAudience must be a non-empty string without spaces',
    ],
  ])('refuses %s', (_name, client, message) => {
    expect(problem(client)).toBe(`invalid configuration: ${message}`);
  });

  it('quotes a bad client name cut to 64 characters (the name could be anything pasted)', () => {
    const name = `${'n'.repeat(63)} ${'s'.repeat(100)}`;
    const description = problem(secretClient, name);
    expect(description).toContain(`client name ${JSON.stringify(name.slice(0, 64))} must match`);
    expect(description).not.toContain('s'.repeat(10));
  });
});

describe('parseClients: clientId', () => {
  it('takes 1 to 256 printable characters without spaces', () => {
    expect(parse({ ...secretClient, clientId: 'x'.repeat(256) }).clientId).toBe('x'.repeat(256));
    for (const clientId of ['x'.repeat(257), 'partner id', ' partner', 'partner ', 'part\nner']) {
      expect(problem({ ...secretClient, clientId })).toContain('BROKER_CLIENTS.partner.clientId must be');
    }
  });
});

describe('parseClients: signing keys of private_key_jwt', () => {
  it('takes up to five keys (the signing key and those rotating in or out), not six', () => {
    const five = [1, 2, 3, 4, 5].map(KEY);
    expect(parse({ ...jwtClient, signingKeyId: five }).auth).toMatchObject({ signingKeyIds: five });
    expect(problem({ ...jwtClient, signingKeyId: [...five, KEY(6)] })).toBe(
      'invalid configuration: BROKER_CLIENTS.partner.signingKeyId lists more than 5 keys',
    );
  });
});

describe('parseClients: tokenParams', () => {
  it('keeps the audience next to the resources', () => {
    const client = parse({
      ...jwtClient,
      tokenParams: { audience: 'https://api.example.com', resource: ['https://b.example/', 'https://a.example/'] },
    });
    expect(client.tokenParams).toEqual({
      audience: 'https://api.example.com',
      resource: ['https://a.example/', 'https://b.example/'],
    });
  });

  it.each([
    ['a space', 'https://a.example/a b'],
    ['a control character', 'https://a.example/a\tb'],
    ['more than 2048 characters', `https://a.example/${'x'.repeat(2048)}`],
    ['an empty fragment', 'https://a.example/#'],
  ])('refuses a resource with %s', (_name, uri) => {
    expect(problem({ ...jwtClient, tokenParams: { resource: [uri] } })).toBe(
      'invalid configuration: BROKER_CLIENTS.partner.tokenParams.resource[0] must be an absolute URI without a fragment',
    );
  });
});

describe('parseClients: prewarm sets', () => {
  it('keeps sets apart whose scopes would run together', () => {
    const client = parse({ ...secretClient, scopes: ['a', 'b', 'ab'], prewarm: [['b', 'a'], ['ab']] });
    expect(client.prewarm).toEqual([['a', 'b'], ['ab']]);
  });
});
