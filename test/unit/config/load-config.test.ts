import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../functions/lib/config/load-config';
import type { BrokerConfig } from '../../../functions/lib/domain/settings';
import { BrokerError } from '../../../functions/lib/shared/errors';

const base = {
  CALLER_PROOF_AUDIENCE: 'limitrail-token-broker-test-token',
  TOKEN_TABLE_NAME: 'tokens',
  TOKEN_KMS_KEY_ID: 'alias/broker',
  BROKER_CLIENTS: JSON.stringify({
    limitrail: { secretId: 'limitrail/client', tokenUrl: 'https://auth.example.com/connect/token', scopes: ['b', 'a'] },
  }),
};

const problem = (env: Record<string, string | undefined>) => {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(BrokerError);
    const body = (err as BrokerError).toOAuth();
    expect(body).toMatchObject({ error: 'server_error', status: 500 });
    return body.error_description;
  }
  throw new Error('expected a configuration error');
};

const clients = (client: Record<string, unknown>) => ({
  ...base,
  BROKER_CLIENTS: JSON.stringify({ limitrail: client }),
});
const good = { secretId: 's', tokenUrl: 'https://auth.example.com/connect/token', scopes: ['a'] };

describe('loadConfig', () => {
  it('reads a valid configuration with defaults', () => {
    const config = loadConfig(base);
    expect(config.tableName).toBe('tokens');
    expect([...config.clients.get('limitrail')!.scopes]).toEqual(['a', 'b']);
    expect(config.secretMaxAgeSec).toBe(300);
    expect(config.tokenEndpointTimeoutMs).toBe(5000);
  });

  it('reads prewarm sets canonically and drops repeats', () => {
    const config = loadConfig(clients({ ...good, scopes: ['a', 'b'], prewarm: [['b', 'a'], ['a'], ['a', 'b', 'a']] }));
    expect(config.clients.get('limitrail')!.prewarm).toEqual([['a', 'b'], ['a']]);
  });

  it('defaults the refresh lease to the token request budget plus 3 s', () => {
    expect(loadConfig(base).refreshLeaseMs).toBe(8000);
    expect(loadConfig({ ...base, TOKEN_ENDPOINT_TIMEOUT_MS: '2000' }).refreshLeaseMs).toBe(5000);
    expect(loadConfig({ ...base, REFRESH_LEASE_MS: '1500' }).refreshLeaseMs).toBe(1500);
  });

  it('names each missing required variable', () => {
    expect(problem({ ...base, TOKEN_TABLE_NAME: undefined })).toContain('TOKEN_TABLE_NAME is not set');
    expect(problem({ ...base, TOKEN_KMS_KEY_ID: '' })).toContain('TOKEN_KMS_KEY_ID is not set');
    expect(problem({ ...base, BROKER_CLIENTS: undefined })).toContain('BROKER_CLIENTS is not set');
  });

  it('does not quote invalid JSON back (it could hold a pasted secret)', () => {
    const description = problem({ ...base, BROKER_CLIENTS: '{"limitrail": hunter2-secret' });
    expect(description).toBe('invalid configuration: BROKER_CLIENTS is not valid JSON');
  });

  it('accepts http only for loopback token URLs, and only where ALLOW_LOOPBACK_TOKEN_URL=true', () => {
    const local = { ALLOW_LOOPBACK_TOKEN_URL: 'true' };
    expect(
      loadConfig({ ...clients({ ...good, tokenUrl: 'http://127.0.0.1:4010/connect/token' }), ...local }).clients.size,
    ).toBe(1);
    expect(
      loadConfig({ ...clients({ ...good, tokenUrl: 'http://localhost:4010/connect/token' }), ...local }).clients.size,
    ).toBe(1);
    expect(problem({ ...clients({ ...good, tokenUrl: 'http://auth.example.com/connect/token' }), ...local })).toContain(
      'must be https',
    );
    expect(problem({ ...clients({ ...good, tokenUrl: 'http://127.0.0.1.example.com/t' }), ...local })).toContain(
      'must be https',
    );
  });

  it('refuses a loopback token URL in a deployed stage (inside Lambda, 127.0.0.1:9001 is the Runtime API), naming the client', () => {
    for (const flag of [undefined, 'false']) {
      const description = problem({
        ...clients({ ...good, tokenUrl: 'http://127.0.0.1:9001/connect/token' }),
        ALLOW_LOOPBACK_TOKEN_URL: flag,
      });
      expect(description).toBe(
        'invalid configuration: BROKER_CLIENTS.limitrail.tokenUrl is plain http to a loopback host, allowed only with ALLOW_LOOPBACK_TOKEN_URL=true (local runs and tests)',
      );
    }
    expect(problem({ ...base, ALLOW_LOOPBACK_TOKEN_URL: 'yes' })).toContain(
      'ALLOW_LOOPBACK_TOKEN_URL must be "true" or "false"',
    );
    expect(loadConfig(clients(good)).clients.size).toBe(1); // https needs no flag
  });

  it('refuses token URLs with credentials without echoing them', () => {
    const description = problem(clients({ ...good, tokenUrl: 'https://user:pa55@auth.example.com/t' }));
    expect(description).toContain('must not contain credentials');
    expect(description).not.toContain('pa55');
  });

  it('reads the callers from BROKER_CALLERS_PARAMETER, re-read every CALLERS_MAX_AGE_SEC (default 60)', () => {
    expect(loadConfig(base).callersParameter).toBeUndefined();
    expect(loadConfig({ ...base, BROKER_CALLERS_PARAMETER: '/broker/ci/callers' }).callersParameter).toEqual({
      name: '/broker/ci/callers',
      maxAgeSec: 60,
    });
    const arn = 'arn:aws:ssm:eu-west-1:111111111111:parameter/broker/ci/callers';
    expect(
      loadConfig({ ...base, BROKER_CALLERS_PARAMETER: arn, CALLERS_MAX_AGE_SEC: '2', BROKER_CALLERS: ' ' })
        .callersParameter,
    ).toEqual({ name: arn, maxAgeSec: 2 });
  });

  it('reads BROKER_CALLERS_PARAMETER trimmed, and a blank one as unset', () => {
    expect(loadConfig({ ...base, BROKER_CALLERS_PARAMETER: ' /broker/ci/callers\n' }).callersParameter).toEqual({
      name: '/broker/ci/callers',
      maxAgeSec: 60,
    });
    expect(loadConfig({ ...base, BROKER_CALLERS_PARAMETER: '  ' }).callersParameter).toBeUndefined();
  });

  it('refuses BROKER_CALLERS and BROKER_CALLERS_PARAMETER both set, naming both', () => {
    const grants = JSON.stringify([{ principal: '111111111111', client: 'limitrail', scopes: ['a'] }]);
    expect(problem({ ...base, BROKER_CALLERS: grants, BROKER_CALLERS_PARAMETER: '/broker/ci/callers' })).toBe(
      'invalid configuration: BROKER_CALLERS and BROKER_CALLERS_PARAMETER are both set: the callers come from one ' +
        'place, the SSM parameter (unset BROKER_CALLERS) or the variable (unset BROKER_CALLERS_PARAMETER)',
    );
    // Whatever BROKER_CALLERS holds: the conflict is named, not a problem inside it.
    expect(problem({ ...base, BROKER_CALLERS: '[{', BROKER_CALLERS_PARAMETER: '/x' })).toContain('are both set');
  });

  it.each([
    ['a parameter name with a space', { BROKER_CALLERS_PARAMETER: '/broker/ci callers' }, 'BROKER_CALLERS_PARAMETER'],
    ['a max age of 0', { BROKER_CALLERS_PARAMETER: '/x', CALLERS_MAX_AGE_SEC: '0' }, 'CALLERS_MAX_AGE_SEC'],
    ['a max age over 15 minutes', { BROKER_CALLERS_PARAMETER: '/x', CALLERS_MAX_AGE_SEC: '901' }, 'from 1 to 900'],
  ])('refuses %s', (_name, env, fragment) => {
    expect(problem({ ...base, ...env })).toContain(fragment);
  });

  it.each([
    ['no clients', { ...base, BROKER_CLIENTS: '{}' }, 'configures no client'],
    ['an array', { ...base, BROKER_CLIENTS: '[]' }, 'must be a JSON object'],
    ['an unknown client field', clients({ ...good, scope: 'a' }), 'unknown field "scope"'],
    ['empty scopes', clients({ ...good, scopes: [] }), 'scopes must be a non-empty array'],
    ['a bad scope', clients({ ...good, scopes: ['a', 'b c'] }), 'scopes[1]'],
    ['no secretId', clients({ ...good, secretId: '' }), 'secretId'],
    ['a relative token URL', clients({ ...good, tokenUrl: '/connect/token' }), 'not an absolute URL'],
    ['prewarm not an array', clients({ ...good, prewarm: 'a' }), 'prewarm must be an array'],
    ['an empty prewarm set', clients({ ...good, prewarm: [[]] }), 'prewarm[0] must be a non-empty array'],
    [
      'a prewarm scope the client may not use',
      clients({ ...good, prewarm: [['a'], ['a', 'z']] }),
      "prewarm[1][1] must be one of the client's scopes",
    ],
    ['a bad numeric setting', { ...base, TOKEN_ENDPOINT_TIMEOUT_MS: '5s' }, 'TOKEN_ENDPOINT_TIMEOUT_MS'],
  ])('refuses %s', (_name, env, fragment) => {
    expect(problem(env)).toContain(fragment);
  });
});

describe('numeric settings', () => {
  // Each setting, the config field it sets, and its range (both ends allowed).
  const settings: [string, keyof BrokerConfig, number, number][] = [
    ['SECRET_MAX_AGE_SEC', 'secretMaxAgeSec', 0, 86_400],
    ['TOKEN_ENDPOINT_TIMEOUT_MS', 'tokenEndpointTimeoutMs', 100, 60_000],
    ['MEMORY_CACHE_MAX_ENTRIES', 'memoryCacheMaxEntries', 1, 100_000],
    ['DATA_KEY_MAX_AGE_SEC', 'dataKeyMaxAgeSec', 1, 86_400],
    ['REFRESH_LEASE_MS', 'refreshLeaseMs', 200, 120_000],
    ['TOKEN_ENDPOINT_MAX_ATTEMPTS', 'tokenEndpointMaxAttempts', 1, 10],
    ['STALE_TOKEN_MIN_TTL_SEC', 'staleTokenMinTtlSec', 1, 3_600],
    ['FORCE_REFRESH_MIN_INTERVAL_SEC', 'forceRefreshMinIntervalSec', 0, 3_600],
  ];

  it.each(settings)('reads %s at both ends of its range', (name, field, min, max) => {
    expect(loadConfig({ ...base, [name]: String(min) })[field]).toBe(min);
    expect(loadConfig({ ...base, [name]: ` ${max} ` })[field]).toBe(max);
  });

  it.each(settings)(
    'refuses %s below, above and between the integers of its range, naming the range',
    (name, _field, min, max) => {
      for (const value of [min - 1, -60, max + 1, min + 0.5]) {
        expect(problem({ ...base, [name]: String(value) })).toBe(
          `invalid configuration: ${name} must be an integer from ${min} to ${max}`,
        );
      }
    },
  );

  it('refuses a negative STALE_TOKEN_MIN_TTL_SEC, which would let the stale fallback answer an expired token', () => {
    expect(problem({ ...base, STALE_TOKEN_MIN_TTL_SEC: '-60' })).toContain('STALE_TOKEN_MIN_TTL_SEC');
    expect(problem({ ...base, STALE_TOKEN_MIN_TTL_SEC: '0' })).toContain('STALE_TOKEN_MIN_TTL_SEC');
  });
});

describe('settings read as written, whatever the spacing, and refused when unusable', () => {
  it('trims the table, key and flag settings', () => {
    expect(problem({ ...base, TOKEN_TABLE_NAME: '   ' })).toContain('TOKEN_TABLE_NAME is not set');
    expect(loadConfig({ ...base, TOKEN_TABLE_NAME: ' tokens ' }).tableName).toBe('tokens');
    const local = loadConfig({
      ...clients({ ...good, tokenUrl: 'http://127.0.0.1:4010/t' }),
      ALLOW_LOOPBACK_TOKEN_URL: ' true ',
    });
    expect(local.clients.size).toBe(1);
    expect(loadConfig({ ...base, ALLOW_LOOPBACK_TOKEN_URL: '' }).clients.size).toBe(1);
    expect(loadConfig({ ...base, SECRET_MAX_AGE_SEC: '' }).secretMaxAgeSec).toBe(300);
  });

  it.each([
    ['a user name without a password', 'https://user@auth.example.com/t', 'must not contain credentials'],
    ['a fragment', 'https://auth.example.com/t#frag', 'must not have a fragment'],
    ['another scheme to a loopback host', 'ftp://127.0.0.1/t', 'must be https'],
  ])('refuses a token URL with %s', (_name, tokenUrl, fragment) => {
    expect(problem({ ...clients({ ...good, tokenUrl }), ALLOW_LOOPBACK_TOKEN_URL: 'true' })).toContain(fragment);
  });

  it('takes every 127.x.y.z address as loopback', () => {
    const env = { ...clients({ ...good, tokenUrl: 'http://127.10.200.3:4010/t' }), ALLOW_LOOPBACK_TOKEN_URL: 'true' };
    expect(loadConfig(env).clients.get('limitrail')!.tokenUrl).toBe('http://127.10.200.3:4010/t');
  });

  it('refuses a client name outside [A-Za-z0-9._-]{1,64}', () => {
    const env = { ...base, BROKER_CLIENTS: JSON.stringify({ 'lime rail': good }) };
    expect(problem(env)).toContain('client name "lime rail" must match');
  });

  it('takes a secret name or ARN of up to 2048 characters, and not a blank one', () => {
    expect(loadConfig(clients({ ...good, secretId: 's'.repeat(2048) })).clients.size).toBe(1);
    expect(problem(clients({ ...good, secretId: 's'.repeat(2049) }))).toContain('secretId must be');
    expect(problem(clients({ ...good, secretId: '   ' }))).toContain('secretId must be');
  });

  it('reads CALLER_AUTH, grants by default, and refuses another mode', () => {
    expect(loadConfig(base).callerAuth).toBe('grants');
    expect(loadConfig({ ...base, CALLER_AUTH: ' invoke-permission ' }).callerAuth).toBe('invoke-permission');
    expect(problem({ ...base, CALLER_AUTH: 'open' })).toContain('CALLER_AUTH must be "grants" or "invoke-permission"');
  });

  it('takes the proofs audience from CALLER_PROOF_AUDIENCE, else the function name, and requires one in grants mode', () => {
    const { CALLER_PROOF_AUDIENCE: _unset, ...withoutAudience } = base;
    expect(problem(withoutAudience)).toContain('CALLER_PROOF_AUDIENCE is not set (nor AWS_LAMBDA_FUNCTION_NAME)');
    expect(loadConfig({ ...withoutAudience, AWS_LAMBDA_FUNCTION_NAME: ' fn ' }).proofPolicy?.audience).toBe('fn');
    expect(loadConfig({ ...withoutAudience, CALLER_AUTH: 'invoke-permission' }).proofPolicy).toBeUndefined();
    expect(loadConfig({ ...base, CALLER_PROOF_AUDIENCE: ' aud ' }).proofPolicy?.audience).toBe('aud');
    for (const audience of ['has space', 'x'.repeat(257)]) {
      expect(problem({ ...base, CALLER_PROOF_AUDIENCE: audience })).toContain('must be 1 to 256 printable characters');
    }
  });

  it('refuses an AWS_ENDPOINT_URL_STS that is not an absolute URL, and takes the origin of one that is', () => {
    expect(problem({ ...base, AWS_ENDPOINT_URL_STS: 'sts.local' })).toContain(
      'AWS_ENDPOINT_URL_STS is not an absolute URL',
    );
    expect(loadConfig({ ...base, AWS_ENDPOINT_URL_STS: ' ' }).proofPolicy?.stsOrigin).toBeUndefined();
    expect(loadConfig({ ...base, AWS_ENDPOINT_URL_STS: 'http://127.0.0.1:5000/x' }).proofPolicy?.stsOrigin).toBe(
      'http://127.0.0.1:5000',
    );
  });

  it('accepts organization grants only in invoke-permission mode', () => {
    const callers = JSON.stringify([{ principal: 'o-a1b2c3d4e5', client: 'limitrail', scopes: ['a'] }]);
    expect(loadConfig({ ...base, CALLER_AUTH: 'invoke-permission', BROKER_CALLERS: callers }).grants).toHaveLength(1);
    expect(problem({ ...base, BROKER_CALLERS: callers })).toContain('BROKER_CALLERS');
  });
});

describe('client authentication and token parameters (BROKER_CLIENTS)', () => {
  const KEY = 'arn:aws:kms:eu-west-1:111111111111:key/11111111-2222-3333-4444-555555555555';
  const ALIAS = 'arn:aws:kms:eu-west-1:111111111111:alias/partner-signing';
  const jwt = {
    authMethod: 'private_key_jwt',
    clientId: 'partner-id',
    signingKeyId: KEY,
    tokenUrl: good.tokenUrl,
    scopes: ['a'],
  };
  const partner = (client: Record<string, unknown>) => ({
    ...base,
    BROKER_CLIENTS: JSON.stringify({ partner: client }),
  });
  const clientOf = (env: Record<string, string>) =>
    loadConfig(env).clients.get('partner') ?? loadConfig(env).clients.get('limitrail')!;

  it('defaults to client_secret_post with the secret, and reads client_secret_basic', () => {
    expect(clientOf(clients(good)).auth).toEqual({ method: 'client_secret_post', secretId: 's' });
    expect(clientOf(clients({ ...good, authMethod: 'client_secret_basic' })).auth).toEqual({
      method: 'client_secret_basic',
      secretId: 's',
    });
    expect(clientOf(clients(good)).tokenParams).toEqual({});
  });

  it('reads private_key_jwt: one key or a list (first signs), the algorithm, the audience (default: the token URL)', () => {
    expect(clientOf(partner(jwt)).auth).toEqual({
      method: 'private_key_jwt',
      signingKeyIds: [KEY],
      signingAlgorithm: undefined,
      assertionAudience: good.tokenUrl,
    });
    const listed = clientOf(
      partner({
        ...jwt,
        signingKeyId: [ALIAS, KEY],
        signingAlgorithm: 'PS256',
        assertionAudience: 'https://idp.example/',
      }),
    );
    expect(listed.auth).toEqual({
      method: 'private_key_jwt',
      signingKeyIds: [ALIAS, KEY],
      signingAlgorithm: 'PS256',
      assertionAudience: 'https://idp.example/',
    });
    expect(listed.clientId).toBe('partner-id');
  });

  it('reads tokenParams canonically: resource deduplicated and sorted', () => {
    expect(clientOf(clients({ ...good, tokenParams: { audience: 'https://api.example.com' } })).tokenParams).toEqual({
      audience: 'https://api.example.com',
    });
    expect(
      clientOf(
        partner({
          ...jwt,
          tokenParams: { resource: ['https://b.example/', 'https://a.example/', 'https://b.example/'] },
        }),
      ).tokenParams,
    ).toEqual({
      resource: ['https://a.example/', 'https://b.example/'],
    });
  });

  it.each([
    [
      'an unknown method',
      clients({ ...good, authMethod: 'tls_client_auth' }),
      'BROKER_CLIENTS.limitrail.authMethod must be one of client_secret_post, client_secret_basic, private_key_jwt',
    ],
    [
      'a signing key on a secret client',
      clients({ ...good, signingKeyId: KEY }),
      'BROKER_CLIENTS.limitrail.signingKeyId is only for authMethod "private_key_jwt" (this client uses "client_secret_post")',
    ],
    [
      'a secret on a private_key_jwt client',
      partner({ ...jwt, secretId: 's' }),
      'BROKER_CLIENTS.partner.secretId must not be set for authMethod "private_key_jwt": no secret is read for it',
    ],
    [
      'no clientId for private_key_jwt',
      partner({ ...jwt, clientId: undefined }),
      'BROKER_CLIENTS.partner.clientId is required for authMethod "private_key_jwt"',
    ],
    [
      'no signingKeyId',
      partner({ ...jwt, signingKeyId: undefined }),
      'BROKER_CLIENTS.partner.signingKeyId is required for authMethod "private_key_jwt"',
    ],
    [
      'a key id that is not an ARN',
      partner({ ...jwt, signingKeyId: '11111111-2222-3333-4444-555555555555' }),
      'BROKER_CLIENTS.partner.signingKeyId must be a KMS key ARN or alias ARN',
    ],
    [
      'a bad key in a list',
      partner({ ...jwt, signingKeyId: [KEY, 'alias/x'] }),
      'BROKER_CLIENTS.partner.signingKeyId[1] must be a KMS key ARN or alias ARN',
    ],
    [
      'an empty key list',
      partner({ ...jwt, signingKeyId: [] }),
      'BROKER_CLIENTS.partner.signingKeyId must be a KMS key ARN or alias ARN',
    ],
    [
      'a key listed twice',
      partner({ ...jwt, signingKeyId: [KEY, KEY] }),
      'BROKER_CLIENTS.partner.signingKeyId lists a key twice',
    ],
    [
      'an unknown algorithm',
      partner({ ...jwt, signingAlgorithm: 'HS256' }),
      'BROKER_CLIENTS.partner.signingAlgorithm must be one of RS256, PS256, ES256',
    ],
    [
      'tokenParams not an object',
      partner({ ...jwt, tokenParams: 'x' }),
      'BROKER_CLIENTS.partner.tokenParams must be an object',
    ],
    [
      'an unknown token parameter',
      partner({ ...jwt, tokenParams: { scope: 'x' } }),
      'BROKER_CLIENTS.partner.tokenParams has unknown field "scope"',
    ],
    [
      'resource not a list',
      partner({ ...jwt, tokenParams: { resource: 'https://a.example/' } }),
      'BROKER_CLIENTS.partner.tokenParams.resource must be a non-empty array',
    ],
    [
      'a relative resource',
      partner({ ...jwt, tokenParams: { resource: ['/api'] } }),
      'BROKER_CLIENTS.partner.tokenParams.resource[0] must be an absolute URI without a fragment',
    ],
    [
      'a resource with a fragment',
      partner({ ...jwt, tokenParams: { resource: ['https://a.example/#x'] } }),
      'tokenParams.resource[0] must be an absolute URI without a fragment',
    ],
    [
      'an audience with spaces',
      partner({ ...jwt, tokenParams: { audience: 'my api' } }),
      'BROKER_CLIENTS.partner.tokenParams.audience must be a non-empty string without spaces',
    ],
  ])('refuses %s, naming the field', (_name, env, message) => {
    expect(problem(env)).toContain(message);
  });
});
