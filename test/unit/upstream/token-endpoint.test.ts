import { describe, expect, it } from 'vitest';
import { ClientCredentials } from '../../../functions/lib/domain/client-credentials';
import { BrokerError } from '../../../functions/lib/shared/errors';
import { clientSecretPost } from '../../../functions/lib/upstream/client-auth';
import { parseClientSecret } from '../../../functions/lib/upstream/secrets-manager-credentials';
import {
  interpretTokenResponse,
  type RawTokenResponse,
  tokenRequest,
} from '../../../functions/lib/upstream/token-endpoint';

const ctx = {
  clientName: 'limitrail',
  credentials: 'the client credentials in secret "limitrail/client"',
  scopes: ['a', 'b'],
};
const NOW = Date.parse('2026-11-29T06:00:00Z');
const response = (status: number, body: unknown, headers: Record<string, string> = {}): RawTokenResponse => ({
  status,
  headers: new Headers(headers),
  bodyText: typeof body === 'string' ? body : JSON.stringify(body),
});
const thrown = (res: RawTokenResponse) => {
  try {
    interpretTokenResponse(res, ctx, NOW);
  } catch (err) {
    expect(err).toBeInstanceOf(BrokerError);
    return err as BrokerError;
  }
  throw new Error('expected a refusal');
};
const refusal = (res: RawTokenResponse) => thrown(res).toOAuth();
const ok = { access_token: 'eyJ.abc.def', token_type: 'Bearer', expires_in: 3600, scope: 'b a' };

describe('interpretTokenResponse: success', () => {
  it('accepts a valid answer and canonicalizes the granted scope', () => {
    expect(interpretTokenResponse(response(200, ok), ctx, NOW)).toEqual({
      accessToken: 'eyJ.abc.def',
      expiresInSec: 3600,
      scopes: ['a', 'b'],
    });
  });

  it('accepts token_type in any case, a numeric string expires_in and an absent scope', () => {
    const grant = interpretTokenResponse(
      response(200, { access_token: 't', token_type: 'bearer', expires_in: '3599' }),
      ctx,
      NOW,
    );
    expect(grant).toEqual({ accessToken: 't', expiresInSec: 3599, scopes: ['a', 'b'] });
  });

  it('accepts the shortest lifetime, one second', () => {
    expect(interpretTokenResponse(response(200, { ...ok, expires_in: 1 }), ctx, NOW).expiresInSec).toBe(1);
  });

  it('accepts a granted superset', () => {
    expect(interpretTokenResponse(response(200, { ...ok, scope: 'a b c' }), ctx, NOW).scopes).toEqual(['a', 'b', 'c']);
  });

  it('does not hand out a token whose granted scope does not cover the request, naming what is missing', () => {
    const err = thrown(response(200, { ...ok, scope: 'a' }));
    expect(err.reason).toBe('upstream_scope_narrowed');
    expect(err.toOAuth()).toEqual({
      error: 'invalid_scope',
      status: 400,
      error_description: 'the token endpoint granted client "limitrail" less than requested: missing "b"',
    });
  });

  // The description says which field is wrong (docs/troubleshooting.md lists these), never what the token is.
  const notJson = 'a body that is not a JSON object';
  const noExpiry = 'no positive "expires_in"';
  it.each([
    ['an HTML page', '<html>oops</html>', notJson],
    ['a JSON array', [ok], notJson],
    ['no access_token', { ...ok, access_token: undefined }, 'no "access_token"'],
    ['an empty access_token', { ...ok, access_token: '' }, 'no "access_token"'],
    [
      'an access_token with a newline',
      { ...ok, access_token: 'a\nb' },
      'an "access_token" that is not printable ASCII',
    ],
    ['token_type mac', { ...ok, token_type: 'mac' }, '"token_type" "mac"; expected Bearer'],
    ['no token_type', { ...ok, token_type: undefined }, '"token_type" missing; expected Bearer'],
    ['no expires_in', { ...ok, expires_in: undefined }, noExpiry],
    ['expires_in zero', { ...ok, expires_in: 0 }, noExpiry],
    ['expires_in negative', { ...ok, expires_in: -5 }, noExpiry],
    ['expires_in not numeric', { ...ok, expires_in: 'soon' }, noExpiry],
    ['expires_in true', { ...ok, expires_in: true }, noExpiry],
    ['expires_in an array', { ...ok, expires_in: [3600] }, noExpiry],
    ['scope not a string', { ...ok, scope: ['a', 'b'] }, 'a "scope" that is not a string'],
  ])('answers 200 with %s: server_error 502, upstream_malformed_response, naming the defect', (_name, body, what) => {
    const err = thrown(response(200, body));
    expect(err.reason).toBe('upstream_malformed_response');
    expect(err.toOAuth()).toEqual({
      error: 'server_error',
      status: 502,
      error_description: `the token endpoint answered 200 with ${what}`,
    });
  });

  it('never puts the token into an error description', () => {
    const description = refusal(
      response(200, { ...ok, token_type: 'mac', access_token: 'SECRET-TOKEN' }),
    ).error_description;
    expect(description).not.toContain('SECRET-TOKEN');
  });
});

describe('interpretTokenResponse: errors', () => {
  it('maps ProblemDetails invalid_client (401) to server_error naming the secret and keeping code and traceId', () => {
    const body = {
      title: 'Unauthorized',
      status: 401,
      errorCode: 'invalid_client',
      resourceKey: 'auth.token.invalid_client',
      traceId: 'abc123',
    };
    expect(refusal(response(401, body))).toEqual({
      error: 'server_error',
      status: 502,
      error_description:
        'the token endpoint rejected the client credentials in secret "limitrail/client" (invalid_client, HTTP 401, resourceKey auth.token.invalid_client, traceId abc123)',
    });
  });

  it('maps RFC 6749 invalid_client answered with 400 the same way', () => {
    expect(refusal(response(400, { error: 'invalid_client', error_description: 'bad' }))).toMatchObject({
      error: 'server_error',
      error_description: expect.stringContaining('secret "limitrail/client"'),
    });
  });

  it('maps invalid_scope in either shape to invalid_scope', () => {
    expect(refusal(response(400, { error: 'invalid_scope' })).error).toBe('invalid_scope');
    expect(refusal(response(400, { errorCode: 'InvalidScope', field: 'scope', traceId: 't1' }))).toEqual({
      error: 'invalid_scope',
      status: 400,
      error_description:
        'the token endpoint refused scope "a b" for client "limitrail" (InvalidScope, HTTP 400, field scope, traceId t1)',
    });
  });

  it('maps 429 and 5xx to temporarily_unavailable', () => {
    expect(refusal(response(429, '', { 'retry-after': '7' }))).toMatchObject({
      error: 'temporarily_unavailable',
      status: 503,
      error_description: expect.stringContaining('retry after 7'),
    });
    expect(refusal(response(503, '<html>down</html>'))).toMatchObject({
      error: 'temporarily_unavailable',
      status: 503,
    });
  });

  it('maps a redirect to server_error and does not follow it', () => {
    for (const status of [300, 302, 399]) {
      expect(refusal(response(status, '', { location: 'https://elsewhere/' }))).toEqual({
        error: 'server_error',
        status: 502,
        error_description: `the token endpoint answered a redirect (HTTP ${status}); redirects are not followed`,
      });
    }
  });

  it('reads a 401 without an error code as rejected credentials', () => {
    expect(refusal(response(401, '<html>unauthorized</html>')).error_description).toBe(
      'the token endpoint rejected the client credentials in secret "limitrail/client" (HTTP 401)',
    );
    // Another 4xx without a code is a refusal, not a credential problem.
    expect(refusal(response(403, '')).error_description).toBe(
      'the token endpoint refused the token request (HTTP 403)',
    );
  });

  it('reads a 401 whose body names another error by that error, not as rejected credentials', () => {
    // upstream_invalid_client makes the provider try the previous secret version and never retry: only for that.
    const scope = thrown(response(401, { error: 'invalid_scope' }));
    expect(scope.reason).toBe('upstream_invalid_scope');
    expect(scope.toOAuth()).toMatchObject({ error: 'invalid_scope', status: 400 });
    const other = thrown(response(401, { errorCode: 'invalid_request', traceId: 't2' }));
    expect(other.reason).toBe('upstream_refused');
    expect(other.message).toBe('the token endpoint refused the token request (invalid_request, HTTP 401, traceId t2)');
  });

  it('keeps how long to wait (Retry-After in seconds or as a date) on the error, for the retries', () => {
    const at = (status: number, retryAfter: string) => {
      try {
        interpretTokenResponse(response(status, '', { 'retry-after': retryAfter }), ctx, NOW);
      } catch (err) {
        return err as BrokerError & { retryAfterMs?: number };
      }
      throw new Error('expected a refusal');
    };
    expect(at(429, '7')).toMatchObject({ retryAfterMs: 7_000, message: expect.stringMatching(/, retry after 7 s$/) });
    expect(at(500, ' 120 ')).toMatchObject({ retryAfterMs: 120_000, reason: 'upstream_unavailable' });
    expect(at(503, new Date(NOW + 30_000).toUTCString())).toMatchObject({ retryAfterMs: 30_000 });
    expect(at(503, 'soon').retryAfterMs).toBeUndefined();
    expect(at(503, '').message).toBe('the token endpoint failed (HTTP 503)');
  });

  it('maps HTTP 500 itself to temporarily_unavailable (every 5xx is retried)', () => {
    expect(refusal(response(500, ''))).toMatchObject({ error: 'temporarily_unavailable', status: 503 });
  });

  it('keeps no free text from the upstream body', () => {
    const body = {
      error: 'invalid_request',
      error_description: 'client_secret=hunter2 is wrong',
      traceId: 'has spaces and secret',
    };
    const description = refusal(response(400, body)).error_description;
    expect(description).toBe('the token endpoint refused the token request (invalid_request, HTTP 400)');
  });
});

describe('client secret', () => {
  it('sends the canonical scope set as a form body (client_secret_post)', () => {
    const { body, headers } = tokenRequest(clientSecretPost(new ClientCredentials('s', 'id', 'sec ret', 'v1')), [
      'a',
      'b',
    ]);
    expect(Object.fromEntries(new URLSearchParams(body))).toEqual({
      grant_type: 'client_credentials',
      client_id: 'id',
      client_secret: 'sec ret',
      scope: 'a b',
    });
    expect(headers).toEqual({ 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' });
  });

  it("sends the client's audience and each resource with every request", () => {
    const auth = clientSecretPost(new ClientCredentials('s', 'id', 'x', 'v1'));
    const { body } = tokenRequest(auth, ['a'], {
      audience: 'https://api.example.com',
      resource: ['https://a.example/', 'https://b.example/'],
    });
    const form = new URLSearchParams(body);
    expect(form.get('audience')).toBe('https://api.example.com');
    expect(form.getAll('resource')).toEqual(['https://a.example/', 'https://b.example/']);
    expect([...form.keys()]).toEqual([
      'grant_type',
      'client_id',
      'client_secret',
      'scope',
      'audience',
      'resource',
      'resource',
    ]);
  });

  it('keeps the client secret out of JSON and inspection', async () => {
    const credentials = new ClientCredentials('s', 'id', 'hunter2hunter2', 'v1');
    const { inspect } = await import('node:util');
    expect(JSON.stringify(credentials)).not.toContain('hunter2');
    expect(inspect(credentials, { showHidden: true, depth: 5 })).not.toContain('hunter2');
  });

  it.each([
    ['not JSON', 'hunter2hunter2', 'is not valid JSON'],
    ['a JSON string', '"hunter2hunter2"', 'is not a JSON object'],
    ['no client_secret', '{"client_id":"id","secret":"hunter2hunter2"}', 'no non-empty string "client_secret"'],
    ['no client_id', '{"client_secret":"hunter2hunter2"}', 'no non-empty string "client_id"'],
    ['a binary secret', undefined, 'no SecretString'],
  ])('refuses a secret that is %s naming the id, never the value', (_name, value, fragment) => {
    try {
      parseClientSecret('limitrail/client', value);
      throw new Error('expected a refusal');
    } catch (err) {
      const body = (err as BrokerError).toOAuth();
      expect(body.error).toBe('server_error');
      expect(body.error_description).toContain('secret "limitrail/client"');
      expect(body.error_description).toContain(fragment);
      expect(body.error_description).not.toContain('hunter2');
    }
  });
});
