import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../functions/lib/config/load-config';
import {
  clientNameFor,
  MAX_SCOPES_PER_REQUEST,
  parseTokenRequest,
  readTokenRequest,
} from '../../../functions/lib/handlers/read-token-request';
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

describe('the error descriptions callers read (docs/troubleshooting.md)', () => {
  const fingerprint = 'ab'.repeat(32);

  it.each([
    ['a null event', null, 'the event must be a JSON object'],
    ['missing scopes', {}, '"scopes" must be an array of scope strings'],
    ['scopes as a string', { scopes: 'a b' }, '"scopes" must be an array of scope strings'],
    ['a scope with a space', { scopes: ['a', 'b c'] }, '"scopes[1]" must be an RFC 6749 scope token'],
    [
      'too many scopes',
      { scopes: Array.from({ length: 33 }, (_, i) => `s${i}`) },
      '"scopes" has 33 entries; at most 32 are allowed',
    ],
    [
      'an unknown field',
      { scopes: ['a'], extra: true },
      'unknown field "extra"; expected client, scopes, minTtlSeconds, forceRefresh, rejectedTokenSha256, identityProof',
    ],
    [
      'a client name that is not one',
      { client: 'a b', scopes: ['a'] },
      '"client" must be a client name (letters, digits, ".", "_", "-")',
    ],
    [
      'minTtlSeconds out of range',
      { scopes: ['a'], minTtlSeconds: 901 },
      '"minTtlSeconds" must be an integer from 0 to 900',
    ],
    ['forceRefresh not a boolean', { scopes: ['a'], forceRefresh: 'yes' }, '"forceRefresh" must be a boolean'],
    [
      'a fingerprint that is not hex SHA-256',
      { scopes: ['a'], forceRefresh: true, rejectedTokenSha256: 'abc' },
      '"rejectedTokenSha256" must be the hex SHA-256 of the rejected token (64 hex digits)',
    ],
  ])('refuses %s saying what is wrong', (_name, event, description) => {
    expect(refusal(event)).toEqual({ error: 'invalid_request', error_description: description, status: 400 });
  });

  it('takes exactly 32 scopes', () => {
    const scopes = Array.from({ length: MAX_SCOPES_PER_REQUEST }, (_, i) => `s${String(i).padStart(2, '0')}`);
    expect(readTokenRequest({ scopes }).scopes).toEqual(scopes);
  });

  it.each([
    ['after a 64-digit fingerprint', `${fingerprint}x`],
    ['before a 64-digit fingerprint', `x${fingerprint}`],
  ])('refuses a rejectedTokenSha256 with a character %s', (_name, sha) => {
    expect(refusal({ scopes: ['a'], forceRefresh: true, rejectedTokenSha256: sha })).toMatchObject({
      error: 'invalid_request',
      error_description: expect.stringContaining('"rejectedTokenSha256" must be'),
    });
  });

  it('names an unknown client and every scope not allowed for a known one', () => {
    expect(refusal({ client: 'other', scopes: ['a'] })).toEqual({
      error: 'invalid_request',
      error_description: 'unknown client "other"',
      status: 400,
    });
    expect(refusal({ scopes: ['a', 'x', 'y'] })).toEqual({
      error: 'invalid_scope',
      error_description: 'scope "x", "y" is not allowed for client "limitrail"',
      status: 400,
    });
  });

  it('asks for the client when the grants, or the broker, name several', () => {
    const input = readTokenRequest({ scopes: ['a'] });
    const ask = (granted?: ReadonlySet<string>) => {
      try {
        clientNameFor(input, twoClients, granted);
      } catch (err) {
        return (err as BrokerError).toOAuth();
      }
      throw new Error('expected a refusal');
    };
    expect(ask(new Set(['one', 'two']))).toEqual({
      error: 'invalid_request',
      error_description: '"client" is required: your grants name several clients',
      status: 400,
    });
    expect(ask()).toEqual({
      error: 'invalid_request',
      error_description: '"client" is required: the broker has several clients',
      status: 400,
    });
    expect(clientNameFor(input, twoClients, new Set(['two']))).toBe('two');
  });
});
