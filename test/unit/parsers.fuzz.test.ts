import { type IdentityProof, signIdentityProof } from '@limitrail/token-broker-client';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkIdentityProof } from '../../functions/lib/callers/identity-proof';
import { interpretStsAnswer } from '../../functions/lib/callers/sts-answer';
import type { ProofPolicy } from '../../functions/lib/domain/proof';
import { isFunctionUrlEvent, readUrlEvent } from '../../functions/lib/handlers/function-url';
import { readTokenRequest } from '../../functions/lib/handlers/read-token-request';
import { BrokerError } from '../../functions/lib/shared/errors';
import { parseClientSecret } from '../../functions/lib/upstream/secrets-manager-credentials';
import { interpretTokenResponse, MAX_TOKEN_LIFETIME_SEC } from '../../functions/lib/upstream/token-endpoint';
import { ABSENT, junk, outcomeOf, proofVariants, runs, shaped } from '../support/fakes/fuzz';

/**
 * The parsers of untrusted input, on random input: each returns its result or throws a BrokerError (what the
 * handler turns into an OAuth answer), never another exception; and no error message quotes a credential.
 */
const NOW = Date.parse('2026-11-29T08:00:00Z');
const json = (arb: fc.Arbitrary<unknown>) => arb.map((v) => JSON.stringify(v));
/** Mostly `valid`, sometimes `wrong`, junk or missing. */
const often = (valid: fc.Arbitrary<unknown>, wrong: fc.Arbitrary<unknown>) =>
  fc.oneof(
    { weight: 12, arbitrary: valid },
    { weight: 2, arbitrary: wrong },
    { weight: 1, arbitrary: junk() },
    { weight: 1, arbitrary: fc.constant(ABSENT) },
  );
const text = fc.oneof(
  fc.string({ maxLength: 64 }),
  fc.string({ unit: 'binary', maxLength: 64 }),
  json(junk()),
  json(fc.jsonValue()),
);

describe('token endpoint answers (interpretTokenResponse)', () => {
  const ctx = {
    clientName: 'limitrail',
    credentials: 'the client credentials in secret "limitrail/client"',
    scopes: ['a', 'b'] as const,
  };
  const TOKEN = 'tok-MARKER-4f1d';
  const DESCRIPTION = 'desc-MARKER-9b2e';
  const success = json(
    shaped({
      access_token: often(fc.constant(TOKEN), fc.constantFrom('', 'has space', 'tök', `${TOKEN}\n`)),
      token_type: often(fc.constantFrom('Bearer', 'bearer', 'BEARER'), fc.constantFrom('mac', 'DPoP', '')),
      expires_in: often(
        fc.oneof(fc.integer({ min: 1, max: 200_000 }), fc.constantFrom('3600', ' 60 ')),
        fc.oneof(fc.constantFrom(0, -1, 0.5, 1e308, '', ' ', 'abc', '1e3', '0x10', null), fc.double()),
      ),
      scope: often(fc.constantFrom('a b', 'b a', 'a b c', 'b  a'), fc.constantFrom('a', '', 'c', ' ')),
      error_description: fc.constant(DESCRIPTION),
    }),
  );
  const failure = json(
    shaped({
      error: often(
        fc.constantFrom('invalid_client', 'invalid_scope', 'invalid_request', 'unauthorized_client', 'server_error'),
        fc.string({ maxLength: 120 }),
      ),
      errorCode: often(fc.constantFrom('InvalidClient', 'invalid-scope', 'RateLimited'), fc.string({ maxLength: 120 })),
      error_description: fc.constant(DESCRIPTION),
      traceId: often(fc.stringMatching(/^[a-f0-9-]{1,40}$/), fc.string({ maxLength: 120 })),
      field: often(fc.constant('scope'), fc.string({ maxLength: 20 })),
      resourceKey: often(fc.constant('limitrail:tokens'), fc.string({ maxLength: 20 })),
    }),
  );
  const answers = fc.record({
    status: fc.oneof(
      fc.constantFrom(200, 201, 204, 301, 302, 307, 400, 401, 403, 404, 429, 500, 502, 503),
      fc.integer({ min: 0, max: 999 }),
    ),
    headers: fc.record({
      'retry-after': fc.option(
        fc.oneof(fc.constantFrom('0', '120', 'Wed, 21 Oct 2015 07:28:00 GMT', '-1', '9'.repeat(400)), fc.string()),
        { nil: null },
      ),
      'x-trace-id': fc.option(fc.string({ maxLength: 40 }), { nil: null }),
    }),
    bodyText: fc.oneof(success, failure, text),
    nowMs: fc.oneof(fc.constant(NOW), fc.maxSafeNat()),
  });

  it('maps any answer to a checked grant or a BrokerError that quotes neither the token nor free text', () => {
    let grants = 0;
    fc.assert(
      fc.property(answers, ({ status, headers, bodyText, nowMs }) => {
        const res = {
          status,
          headers: { get: (name: string) => headers[name as keyof typeof headers] ?? null },
          bodyText,
        };
        const outcome = outcomeOf(() => interpretTokenResponse(res, ctx, nowMs));
        if ('refused' in outcome) {
          expect(outcome.refused.status).toBeGreaterThanOrEqual(400);
          expect(outcome.refused.message).not.toContain(TOKEN);
          expect(outcome.refused.message).not.toContain(DESCRIPTION);
          const retryAfterMs = (outcome.refused as { retryAfterMs?: number }).retryAfterMs;
          if (retryAfterMs !== undefined) expect(retryAfterMs).toBeGreaterThanOrEqual(0);
          return;
        }
        grants += 1;
        const grant = outcome.result;
        expect(status).toBeGreaterThanOrEqual(200);
        expect(status).toBeLessThan(300);
        expect(grant.accessToken).toMatch(/^[\x21-\x7E]+$/);
        expect(
          Number.isInteger(grant.expiresInSec) &&
            grant.expiresInSec >= 1 &&
            grant.expiresInSec <= MAX_TOKEN_LIFETIME_SEC,
        ).toBe(true);
        expect(grant.scopes).toEqual(expect.arrayContaining([...ctx.scopes]));
      }),
      runs(5000),
    );
    expect(grants).toBeGreaterThan(0);
  });
});

describe('secret values (parseClientSecret)', () => {
  const SECRET = 'cs-MARKER-77aa';
  const values = fc.oneof(
    fc.constant(undefined),
    text,
    json(
      shaped({
        client_id: often(fc.constantFrom('broker-client', 'x'), fc.constantFrom('', ' ')),
        client_secret: often(fc.constant(SECRET), fc.constantFrom('', ' ')),
      }),
    ),
    json(
      fc.dictionary(
        fc.constantFrom('client_id', 'client_secret', 'clientId', 'secret'),
        fc.oneof(fc.constant(SECRET), junk()),
      ),
    ),
  );

  it('reads any secret value into credentials or a BrokerError that never quotes the value', () => {
    let read = 0;
    fc.assert(
      fc.property(
        fc.string({ maxLength: 300 }),
        values,
        fc.option(fc.string({ maxLength: 40 }), { nil: undefined }),
        (secretId, value, versionId) => {
          const outcome = outcomeOf(() => parseClientSecret(secretId, value, versionId));
          if ('refused' in outcome) {
            expect(outcome.refused).toMatchObject({ status: 500, reason: 'secret_malformed' });
            expect(outcome.refused.message).not.toContain(SECRET);
            return;
          }
          read += 1;
          const credentials = outcome.result;
          expect(credentials.clientId).toMatch(/.+/s);
          expect(credentials.clientSecret()).toMatch(/.+/s);
          expect(JSON.parse(JSON.stringify(credentials))).toEqual({
            secretId,
            clientId: credentials.clientId,
            ...(versionId === undefined ? {} : { versionId }),
          });
        },
      ),
      runs(5000),
    );
    expect(read).toBeGreaterThan(0);
  });
});

describe('identity proofs and STS answers', () => {
  const AUDIENCE = 'broker-fuzz-token';
  const AWS: ProofPolicy = { audience: AUDIENCE, stsOrigin: undefined, partition: 'aws' };
  const LOCAL: ProofPolicy = { audience: AUDIENCE, stsOrigin: 'http://127.0.0.1:5000', partition: 'aws' };
  let aws: IdentityProof;
  let local: IdentityProof;
  const credentials = {
    accessKeyId: 'ASIAEXAMPLEEXAMPLE01',
    secretAccessKey: 'secret',
    sessionToken: 'session-MARKER-3c3c',
  };
  beforeAll(async () => {
    const sign = (stsUrl: string) =>
      signIdentityProof({
        credentials,
        region: 'eu-central-1',
        audience: AUDIENCE,
        stsUrl,
        signingDate: new Date(NOW),
      });
    [aws, local] = await Promise.all([sign('https://sts.eu-central-1.amazonaws.com/'), sign('http://127.0.0.1:5000/')]);
  });

  it('checks any proof into a sendable proof or a 400/403 BrokerError that quotes no part of it', () => {
    const checked = { aws: 0, local: 0 };
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.oneof(
          { weight: 4, arbitrary: fc.boolean().chain((isAws) => proofVariants(isAws ? aws : local)) },
          { weight: 1, arbitrary: fc.anything() },
        ),
        fc.integer({ min: -10 * 60_000, max: 10 * 60_000 }),
        (useAws, raw, skewMs) => {
          const policy = useAws ? AWS : LOCAL;
          const outcome = outcomeOf(() => checkIdentityProof(raw, policy, NOW + skewMs));
          if ('refused' in outcome) {
            expect([400, 403]).toContain(outcome.refused.status);
            for (const proof of [aws, local]) {
              expect(outcome.refused.message).not.toContain(
                /Signature=([0-9a-f]{64})/.exec(proof.headers.authorization!)![1],
              );
            }
            expect(outcome.refused.message).not.toContain(credentials.sessionToken);
            return;
          }
          const proof = outcome.result;
          expect(proof.url).toBe(useAws ? 'https://sts.eu-central-1.amazonaws.com/' : 'http://127.0.0.1:5000/');
          expect(proof.key).toMatch(/^[0-9a-f]{64}$/);
          expect(proof.validUntilMs).toBeGreaterThan(NOW + skewMs);
          checked[useAws ? 'aws' : 'local'] += 1;
        },
      ),
      runs(5000),
    );
    expect(checked.aws).toBeGreaterThan(0);
    expect(checked.local).toBeGreaterThan(0);
  });

  const arns = fc.oneof(
    fc.constantFrom(
      'arn:aws:sts::111111111111:assumed-role/billing/i-0abc',
      'arn:aws:iam::111111111111:user/ci',
      'arn:aws-cn:sts::111111111111:assumed-role/x/y',
      'arn:aws:sts::11111111111:assumed-role/billing/i',
      'arn:aws:sts::111111111111:',
      'arn:aws:s3:::bucket',
    ),
    fc.string({ maxLength: 80 }),
  );
  const accounts = fc.oneof(
    fc.constantFrom('111111111111', '222222222222', ' 111111111111 '),
    fc.string({ maxLength: 14 }),
  );
  const xmlAnswer = fc
    .record({ arn: arns, account: accounts, extra: fc.string({ maxLength: 30 }) })
    .map(
      ({ arn, account, extra }) =>
        `<GetCallerIdentityResponse><GetCallerIdentityResult><Arn>${arn}</Arn><UserId>${extra}</UserId><Account>${account}</Account></GetCallerIdentityResult></GetCallerIdentityResponse>`,
    );
  const jsonAnswer = fc
    .record({ Arn: fc.oneof(arns, junk()), Account: fc.oneof(accounts, junk()) })
    .map((result) => JSON.stringify({ GetCallerIdentityResponse: { GetCallerIdentityResult: result } }));
  const errorAnswer = fc
    .record({
      code: fc.oneof(
        fc.constantFrom('SignatureDoesNotMatch', 'ExpiredToken', 'Throttling', 'InvalidClientTokenId'),
        fc.string({ maxLength: 80 }),
      ),
      message: fc.string({ maxLength: 40 }),
    })
    .chain(({ code, message }) =>
      fc.constantFrom(
        `<ErrorResponse><Error><Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error></ErrorResponse>`,
        JSON.stringify({ Error: { Code: code, Message: message } }),
        JSON.stringify({ __type: code, message }),
      ),
    );

  it('reads any STS answer into a proven identity or a 403/503 BrokerError', () => {
    let proven = 0;
    fc.assert(
      fc.property(
        fc.oneof(fc.constantFrom(200, 400, 403, 429, 500, 503), fc.integer({ min: 0, max: 999 })),
        fc.oneof(xmlAnswer, jsonAnswer, errorAnswer, text),
        (status, bodyText) => {
          const outcome = outcomeOf(() => interpretStsAnswer({ status, bodyText }));
          if ('refused' in outcome) {
            expect([403, 503]).toContain(outcome.refused.status);
            return;
          }
          proven += 1;
          const { arn, accountId } = outcome.result;
          expect(accountId).toMatch(/^\d{12}$/);
          expect(arn.split(':')[4]).toBe(accountId);
        },
      ),
      runs(5000),
    );
    expect(proven).toBeGreaterThan(0);
  });
});

describe('events (readTokenRequest, readUrlEvent)', () => {
  it('reads any value as a token request or refuses it with a 400 BrokerError', () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), fc.jsonValue()), (event) => {
        const outcome = outcomeOf(() => readTokenRequest(event));
        if ('refused' in outcome) expect(outcome.refused.status).toBe(400);
      }),
      runs(3000),
    );
  });

  it('reads any URL-shaped event into a payload or a refusal, without throwing', () => {
    const events = fc
      .record({
        http: fc.oneof(fc.constant({ method: 'POST' }), fc.dictionary(fc.string(), junk())),
        rest: fc.dictionary(fc.constantFrom('authorizer', 'requestId'), junk()),
      })
      .chain(({ http, rest }) =>
        shaped({
          version: fc.constant('2.0'),
          requestContext: fc.constant({ ...rest, http }),
          body: fc.oneof(fc.string(), fc.base64String(), junk(), fc.constant(ABSENT)),
          isBase64Encoded: fc.oneof(fc.boolean(), junk(), fc.constant(ABSENT)),
          headers: fc.oneof(junk(), fc.constant(ABSENT)),
        }),
      );
    fc.assert(
      fc.property(events, (event) => {
        if (!isFunctionUrlEvent(event)) throw new Error('the generator should make URL-shaped events');
        const input = readUrlEvent(event);
        expect('payload' in input !== 'refusal' in input).toBe(true);
        if (input.refusal) expect(input.refusal).toBeInstanceOf(BrokerError);
      }),
      runs(3000),
    );
  });
});
