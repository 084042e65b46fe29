import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../functions/lib/config/load-config';
import { parseTokenRequest } from '../../../functions/lib/handlers/read-token-request';
import { BrokerError } from '../../../functions/lib/shared/errors';

const config = loadConfig({
  CALLER_PROOF_AUDIENCE: 'broker',
  TOKEN_TABLE_NAME: 't',
  TOKEN_KMS_KEY_ID: 'k',
  BROKER_CLIENTS: JSON.stringify({
    limitrail: {
      secretId: 's',
      tokenUrl: 'https://auth.example.com/connect/token',
      scopes: ['a', 'b', 'limitrail.usage.write'],
    },
  }),
});
const twoClients = loadConfig({
  CALLER_PROOF_AUDIENCE: 'broker',
  TOKEN_TABLE_NAME: 't',
  TOKEN_KMS_KEY_ID: 'k',
  BROKER_CLIENTS: JSON.stringify({
    one: { secretId: 's1', tokenUrl: 'https://auth.example.com/connect/token', scopes: ['a'] },
    two: { secretId: 's2', tokenUrl: 'https://auth.example.com/connect/token', scopes: ['b'] },
  }),
});

const refusal = (event: unknown, cfg = config) => {
  try {
    parseTokenRequest(event, cfg);
  } catch (err) {
    expect(err).toBeInstanceOf(BrokerError);
    return (err as BrokerError).toOAuth();
  }
  throw new Error('expected a refusal');
};

describe('parseTokenRequest', () => {
  it('defaults the client when exactly one is configured and minTtlSeconds to 60', () => {
    const req = parseTokenRequest({ scopes: ['a'] }, config);
    expect(req.client.name).toBe('limitrail');
    expect(req.minTtlSec).toBe(60);
  });

  it('normalizes scopes: order and duplicates do not matter', () => {
    expect(parseTokenRequest({ scopes: ['b', 'a', 'a'] }, config).scopes).toEqual(['a', 'b']);
    expect(parseTokenRequest({ scopes: ['a', 'b'] }, config).scopes).toEqual(['a', 'b']);
  });

  it('requires the client when several are configured, and picks the named one', () => {
    expect(refusal({ scopes: ['a'] }, twoClients)).toMatchObject({ error: 'invalid_request', status: 400 });
    expect(parseTokenRequest({ client: 'two', scopes: ['b'] }, twoClients).client.auth).toEqual({
      method: 'client_secret_post',
      secretId: 's2',
    });
  });

  it.each([
    ['null event', null],
    ['string event', '{"scopes":["a"]}'],
    ['array event', [{ scopes: ['a'] }]],
    ['unknown field', { scopes: ['a'], scope: 'a' }],
    ['missing scopes', {}],
    ['empty scopes', { scopes: [] }],
    ['scopes as a string', { scopes: 'a b' }],
    ['a non-string scope', { scopes: ['a', 7] }],
    ['a scope with a space', { scopes: ['a b'] }],
    ['a scope with a quote', { scopes: ['a"'] }],
    ['a scope with a backslash', { scopes: ['a\\'] }],
    ['a non-ASCII scope', { scopes: ['é'] }],
    ['too many scopes', { scopes: Array.from({ length: 33 }, (_, i) => `s${i}`) }],
    ['client not a string', { client: 1, scopes: ['a'] }],
    ['unknown client', { client: 'other', scopes: ['a'] }],
    ['minTtlSeconds a string', { scopes: ['a'], minTtlSeconds: '60' }],
    ['minTtlSeconds negative', { scopes: ['a'], minTtlSeconds: -1 }],
    ['minTtlSeconds fractional', { scopes: ['a'], minTtlSeconds: 1.5 }],
    ['minTtlSeconds above the bound', { scopes: ['a'], minTtlSeconds: 901 }],
    ['forceRefresh not a boolean', { scopes: ['a'], forceRefresh: 'yes' }],
    ['a fingerprint without forceRefresh', { scopes: ['a'], rejectedTokenSha256: 'a'.repeat(64) }],
    [
      'a fingerprint with forceRefresh false',
      { scopes: ['a'], forceRefresh: false, rejectedTokenSha256: 'a'.repeat(64) },
    ],
    ['a fingerprint that is not hex SHA-256', { scopes: ['a'], forceRefresh: true, rejectedTokenSha256: 'abc' }],
  ])('refuses %s with invalid_request 400', (_name, event) => {
    expect(refusal(event)).toMatchObject({ error: 'invalid_request', status: 400 });
  });

  it('reads a forced refresh, with the rejected token fingerprint in lowercase', () => {
    expect(parseTokenRequest({ scopes: ['a'], forceRefresh: true }, config)).toMatchObject({
      forceRefresh: true,
      rejectedTokenSha256: undefined,
    });
    expect(
      parseTokenRequest({ scopes: ['a'], forceRefresh: true, rejectedTokenSha256: 'AB'.repeat(32) }, config)
        .rejectedTokenSha256,
    ).toBe('ab'.repeat(32));
    expect(parseTokenRequest({ scopes: ['a'] }, config).forceRefresh).toBe(false);
  });

  it('refuses a scope not configured for the client with invalid_scope naming it', () => {
    expect(refusal({ client: 'limitrail', scopes: ['a', 'x'] })).toEqual({
      error: 'invalid_scope',
      error_description: 'scope "x" is not allowed for client "limitrail"',
      status: 400,
    });
  });

  it('names the offending field and index', () => {
    expect(refusal({ scopes: ['a', 'b c'] }).error_description).toContain('"scopes[1]"');
    expect(refusal({ scopes: ['a'], extra: true }).error_description).toContain('unknown field "extra"');
  });

  it('bounds how much of caller input is quoted back', () => {
    const description = refusal({ scopes: ['a'], ['x'.repeat(10_000)]: 1 }).error_description;
    expect(description.length).toBeLessThan(200);
  });
});
