import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../functions/lib/config/load-config';
import type { AssertionSigner, CredentialSource } from '../../../functions/lib/ports';
import { UnavailableError, UpstreamError } from '../../../functions/lib/shared/errors';
import type { MetricName, MetricsSink } from '../../../functions/lib/shared/metrics';
import type { ClientAuthentication } from '../../../functions/lib/upstream/client-auth';
import { EndpointTokenProvider, isRetryable } from '../../../functions/lib/upstream/endpoint-token-provider';
import type { IssuedToken, TokenRequestContext } from '../../../functions/lib/upstream/token-endpoint';
import { tokenRequest } from '../../../functions/lib/upstream/token-endpoint';
import { KeySigner } from '../../support/fakes/key-signer';

/**
 * A private_key_jwt client's fetch, on a fake clock, with the token endpoint faked behind the provider's request
 * function and a node:crypto signer: no secret is read, every attempt signs a new assertion, a throttled KMS is
 * retried like a 5xx, a refused assertion or an unusable key is not, and each case is counted.
 */
const START_MS = Date.parse('2026-11-29T06:00:00Z');
const KEY = 'arn:aws:kms:eu-west-1:111111111111:key/11111111-2222-3333-4444-555555555555';
const client = loadConfig({
  CALLER_PROOF_AUDIENCE: 'broker',
  TOKEN_TABLE_NAME: 't',
  TOKEN_KMS_KEY_ID: 'k',
  BROKER_CLIENTS: JSON.stringify({
    partner: {
      authMethod: 'private_key_jwt',
      clientId: 'partner-id',
      signingKeyId: [KEY, KEY.replace(/5$/, '6')],
      tokenUrl: 'https://idp.example/oauth/token',
      scopes: ['a'],
      tokenParams: { audience: 'https://api.example.com' },
    },
  }),
}).clients.get('partner')!;
const noSecrets: CredentialSource = {
  get: async () => {
    throw new Error('a secret was read for a private_key_jwt client');
  },
  previous: async () => {
    throw new Error('a secret was read for a private_key_jwt client');
  },
  remember: () => undefined,
};
const grant: IssuedToken = { accessToken: 'eyJ.a.b', expiresInSec: 3600, scopes: ['a'] };

/**
 * The endpoint's answers in order (an error is thrown); each signature takes `signMs` on the fake clock; without
 * `configured`, the provider has no signer.
 */
const setup = (answers: (IssuedToken | Error)[], signer = new KeySigner('ES256'), signMs = 0, configured = true) => {
  let nowMs = START_MS;
  const sent: { form: URLSearchParams; ctx: TokenRequestContext }[] = [];
  const counted: Partial<Record<MetricName, number>> = {};
  const recorded: Partial<Record<MetricName, number[]>> = {};
  const metrics: MetricsSink = {
    count: (name, n = 1) => {
      counted[name] = (counted[name] ?? 0) + n;
    },
    record: (name, value) => {
      recorded[name] = [...(recorded[name] ?? []), value];
    },
  };
  const timed: AssertionSigner = {
    signingKey: (keyId, algorithm) => signer.signingKey(keyId, algorithm),
    sign: (key, input) => {
      nowMs += signMs;
      return signer.sign(key, input);
    },
  };
  const warnings: Record<string, unknown>[] = [];
  const log = {
    child: () => log,
    debug: () => undefined,
    info: () => undefined,
    error: () => undefined,
    warn: (message: string, fields?: Record<string, unknown>) => void warnings.push({ message, ...fields }),
  };
  const fetcher = new EndpointTokenProvider(
    noSecrets,
    { nowMs: () => nowMs },
    {
      timeoutMs: 5_000,
      maxAttempts: 3,
      random: () => 0.5,
      signer: configured ? timed : undefined,
      sleep: async (ms) => {
        nowMs += ms;
      },
      request: async (_url: string, auth: ClientAuthentication, ctx: TokenRequestContext) => {
        sent.push({ form: new URLSearchParams(tokenRequest(auth, ctx.scopes, ctx.tokenParams).body), ctx });
        const next = answers.shift()!;
        if (next instanceof Error) throw next;
        return next;
      },
    },
  );
  const fetch = () =>
    fetcher.fetch({
      client,
      scopes: ['a'],
      deadlineMs: START_MS + 10_000,
      log,
      keyFields: { client: 'partner' },
      metrics,
      degraded: () => undefined,
    });
  return { fetch, sent, counted, recorded, warnings, signer };
};

const jtiOf = (form: URLSearchParams) =>
  JSON.parse(Buffer.from(form.get('client_assertion')!.split('.')[1]!, 'base64url').toString('utf8')).jti as string;

describe('private_key_jwt fetch', () => {
  it('signs with the first key, reads no secret, and sends the client id, the assertion and the token parameters', async () => {
    const t = setup([grant]);
    expect((await t.fetch()).accessToken).toBe('eyJ.a.b');
    const [{ form, ctx }] = t.sent as [(typeof t.sent)[0]];
    expect(form.get('client_id')).toBe('partner-id');
    expect(form.get('client_assertion_type')).toBe('urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
    expect(form.get('audience')).toBe('https://api.example.com');
    expect(form.get('client_secret')).toBeNull();
    expect(ctx.credentials).toBe(`the client assertion (private_key_jwt) of client "partner" signed by key "${KEY}"`);
    expect(t.counted).toMatchObject({ AssertionsSigned: 1, UpstreamRequests: 1 });
  });

  it('signs a new assertion (a new jti) for each attempt after a 5xx', async () => {
    const t = setup([new UnavailableError('down', 'upstream_unavailable'), grant]);
    await t.fetch();
    expect(t.sent).toHaveLength(2);
    expect(jtiOf(t.sent[0]!.form)).not.toBe(jtiOf(t.sent[1]!.form));
    expect(t.counted).toMatchObject({ AssertionsSigned: 2, UpstreamRequests: 2, UpstreamErrors: 1 });
  });

  it('retries a throttled KMS within the deadline, counting a signing error and no upstream error', async () => {
    const t = setup([grant]);
    t.signer.failNext(new UnavailableError('KMS is unavailable for Sign', 'signing_unavailable'));
    await t.fetch();
    expect(isRetryable(new UnavailableError('x', 'signing_unavailable'))).toBe(true);
    expect(t.sent).toHaveLength(1);
    expect(t.counted).toEqual({
      SigningErrors: 1,
      'SigningError.signing_unavailable': 1,
      AssertionsSigned: 1,
      UpstreamRequests: 1,
    });
  });

  it('does not retry a key KMS refuses: one signing attempt, nothing sent, 503 signing_key_unusable', async () => {
    const t = setup([grant]);
    t.signer.failNext(new UnavailableError('KMS refused Sign', 'signing_key_unusable'));
    await expect(t.fetch()).rejects.toMatchObject({ reason: 'signing_key_unusable', status: 503 });
    expect(t.sent).toHaveLength(0);
    expect(t.counted).toEqual({ SigningErrors: 1, 'SigningError.signing_key_unusable': 1 });
    expect(t.warnings).toEqual([]); // not a refusal by the endpoint: nothing logged as one
  });

  it('records how long each assertion took to sign as SigningLatency', async () => {
    const t = setup([new UnavailableError('down', 'upstream_unavailable'), grant], undefined, 35);
    await t.fetch();
    expect(t.recorded.SigningLatency).toEqual([35, 35]);
  });

  it('refuses a private_key_jwt client when no signer is configured: config_invalid, nothing sent', async () => {
    const t = setup([grant], undefined, 0, false);
    await expect(t.fetch()).rejects.toMatchObject({
      reason: 'config_invalid',
      message: 'no signer for private_key_jwt client "partner"',
    });
    expect(t.sent).toHaveLength(0);
  });

  it('does not retry an assertion the endpoint refuses, and logs the client, the method and the kid (never the assertion)', async () => {
    const t = setup([new UpstreamError('the token endpoint rejected ...', 'upstream_invalid_client'), grant]);
    await expect(t.fetch()).rejects.toMatchObject({ reason: 'upstream_invalid_client', status: 502 });
    expect(t.sent).toHaveLength(1);
    const key = await t.signer.signingKey(KEY, undefined);
    expect(t.warnings).toEqual([
      {
        message: 'token endpoint rejected the client authentication',
        client: 'partner',
        authMethod: 'private_key_jwt',
        signingKey: KEY,
        kid: key.kid,
      },
    ]);
    expect(JSON.stringify(t.warnings)).not.toContain(t.sent[0]!.form.get('client_assertion')!.split('.')[2]);
  });
});
