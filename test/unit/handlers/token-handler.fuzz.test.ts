import { type IdentityProof, signIdentityProof } from '@limitrail/token-broker-client';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTokenHandler } from '../../../functions/lib/handlers/token-handler';
import type { IdentityVerifier } from '../../../functions/lib/ports';
import { createRuntime, loggerFromEnv } from '../../../functions/lib/runtime';
import { isRecord } from '../../../functions/lib/shared/assert';
import type { InvocationMetrics } from '../../../functions/lib/shared/metrics';
import type { Telemetry } from '../../../functions/lib/shared/telemetry';
import { answeringBroker } from '../../support/fakes/answering-broker';
import { ABSENT, isOAuthErrorBody, junk, mostly, proofVariants, runs, shaped } from '../../support/fakes/fuzz';
import { roleSession, urlEvent } from '../../support/fakes/url-event';
import { captureLogLines, stopCapturing } from '../../support/log-capture';

/**
 * Every event, however malformed, direct or Function-URL-shaped, gets an OAuth-shaped answer: a token, or a 4xx
 * refusal with one `"audit": "refused"` line. The handler runs for real (event reading, identity proof checks,
 * grants, request resolution); only the two I/O edges are fakes: STS (the verifier says every well-formed proof
 * was signed by role `billing`) and the broker (it answers a token for any request that reaches it).
 */
const NOW = Date.parse('2026-11-29T08:00:00Z');
const AUDIENCE = 'limitrail-token-broker-fuzz-token';
const ACCOUNT = '111111111111';
const PROVEN_ARN = `arn:aws:sts::${ACCOUNT}:assumed-role/billing/fuzz`;
const TOKEN = 'fuzz-access-token-0123456789';
const env = {
  CALLER_PROOF_AUDIENCE: AUDIENCE,
  TOKEN_TABLE_NAME: 'tokens',
  TOKEN_KMS_KEY_ID: 'alias/broker',
  BROKER_CLIENTS: JSON.stringify({
    limitrail: { secretId: 's', tokenUrl: 'https://auth.example.com/connect/token', scopes: ['a', 'b'] },
  }),
  BROKER_CALLERS: JSON.stringify([
    { principal: `arn:aws:iam::${ACCOUNT}:role/billing`, client: 'limitrail', scopes: ['a'] },
  ]),
};

/**
 * The handler with faked STS and broker, and what it did: log lines (Powertools writes them to stdout and stderr,
 * captured), STS verifications, broker calls. `failing`: what throws, to reach the paths outside the refusal path
 * (a failing stream write cannot: Powertools' Console ignores write errors).
 */
let capturing: string[] = [];
const harness = (options: { failing?: { metrics?: boolean; fallbackLog?: boolean } } = {}) => {
  stopCapturing(capturing);
  capturing = captureLogLines([]);
  const { broker, calls } = answeringBroker(TOKEN);
  const seen = {
    lines: capturing,
    verifications: 0,
    get brokerCalls() {
      return calls.length;
    },
  };
  const callers: IdentityVerifier = {
    verify: async () => {
      seen.verifications += 1;
      return { identity: { arn: PROVEN_ARN, accountId: ACCOUNT, principalOrgId: undefined }, source: 'verified' };
    },
  };
  const failingMetrics: InvocationMetrics = {
    count: () => undefined,
    record: () => undefined,
    flush: () => {
      throw new Error('metrics failed');
    },
  };
  const handler = createTokenHandler(
    () => {
      const runtime = createRuntime(env, { clock: { nowMs: () => NOW }, callers });
      const { telemetry } = runtime;
      const failing: Telemetry = { begin: (context) => ({ ...telemetry.begin(context), metrics: failingMetrics }) };
      return { ...runtime, broker, ...(options.failing?.metrics ? { telemetry: failing } : {}) };
    },
    () => {
      if (options.failing?.fallbackLog) throw new Error('fallback log failed');
      return loggerFromEnv(env);
    },
  );
  return { seen, handler };
};

type Handler = ReturnType<typeof harness>['handler'];
type Seen = ReturnType<typeof harness>['seen'];

/** Lambda's own shape test for a Function URL event, independent of the code under test. */
const looksLikeUrlEvent = (event: unknown) =>
  isRecord(event) && event.version === '2.0' && isRecord(event.requestContext) && isRecord(event.requestContext.http);

const auditLine = (seen: Seen) =>
  seen.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.audit === 'refused');

type Outcome = { kind: 'token' } | { kind: 'refused'; status: number; error: string };

/**
 * Runs one event and checks everything that must hold of any answer: it resolves; a URL event gets an HTTP answer
 * whose status is the body's; a refusal is OAuth-shaped, 4xx, and has exactly one refusal audit line with its
 * status; a token came from the broker and has no refusal line; no line carries the token or the proof's signature.
 */
const invoke = async (handler: Handler, seen: Seen, event: unknown, secrets: string[] = []): Promise<Outcome> => {
  seen.lines.length = 0;
  const calls = seen.brokerCalls;
  const answer: unknown = await handler(event, { awsRequestId: 'fuzz' });
  let body: unknown = answer;
  if (looksLikeUrlEvent(event)) {
    if (!isRecord(answer) || typeof answer.body !== 'string' || typeof answer.statusCode !== 'number') {
      throw new Error(`a URL event got a non-HTTP answer: ${JSON.stringify(answer)}`);
    }
    body = JSON.parse(answer.body);
    expect(answer.statusCode).toBe(isOAuthErrorBody(body) ? body.status : 200);
  }
  const refusals = seen.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.audit === 'refused');
  for (const line of seen.lines) for (const secret of [TOKEN, ...secrets]) expect(line).not.toContain(secret);
  if (isOAuthErrorBody(body)) {
    expect(body.status, body.error_description).toBeGreaterThanOrEqual(400);
    expect(body.status, body.error_description).toBeLessThan(500);
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toMatchObject({ status: body.status, error: body.error });
    expect(seen.brokerCalls).toBe(calls);
    return { kind: 'refused', status: body.status, error: body.error };
  }
  expect(body).toMatchObject({ access_token: TOKEN, token_type: 'Bearer', client: 'limitrail' });
  expect(refusals).toHaveLength(0);
  expect(seen.brokerCalls).toBe(calls + 1);
  return { kind: 'token' };
};

/** `valid` eight times in ten, else one of `others`. */
const usually = <T>(valid: T, ...others: T[]) =>
  fc.oneof({ weight: 8, arbitrary: fc.constant(valid) }, { weight: 2, arbitrary: fc.constantFrom(...others) });

/** Mostly `valid`, sometimes `wrong` or junk. */
const often = (valid: fc.Arbitrary<unknown>, wrong: fc.Arbitrary<unknown>) =>
  fc.oneof({ weight: 16, arbitrary: valid }, { weight: 2, arbitrary: wrong }, { weight: 1, arbitrary: junk() });

/**
 * Token requests near valid ones: each field mostly right, sometimes wrong, junk or missing, sometimes with an
 * extra field; about a quarter are entirely valid.
 */
const tokenRequests = (valid: IdentityProof) =>
  shaped({
    client: often(fc.constantFrom('limitrail', ABSENT), fc.constantFrom('other', 'not a name', '')),
    scopes: often(
      fc.constantFrom(['a'], ['a', 'a']),
      fc.oneof(
        fc.constantFrom(['a', 'b'], ['b'], [], ['a b'], ['a', ''], ABSENT),
        fc.array(fc.oneof(fc.constantFrom('a', 'b', 'c'), fc.string({ maxLength: 8 }), junk()), { maxLength: 40 }),
      ),
    ),
    minTtlSeconds: often(
      fc.oneof(fc.constant(ABSENT), fc.integer({ min: 0, max: 900 })),
      fc.integer({ min: -1000, max: 10_000 }),
    ),
    forceRefresh: often(fc.constantFrom(ABSENT, false, true), fc.constantFrom('true', 1, null)),
    rejectedTokenSha256: often(
      fc.constant(ABSENT),
      fc.oneof(fc.stringMatching(/^[0-9a-fA-F]{64}$/), fc.string({ maxLength: 70 })),
    ),
    identityProof: proofVariants(valid),
  });

const b64 = (text: string) => Buffer.from(text).toString('base64');

/** Function URL events near the ones Lambda builds: every part mostly right, sometimes junk or missing. */
const urlEvents = (valid: IdentityProof) => {
  const iam = shaped({
    userArn: mostly(
      usually(
        PROVEN_ARN,
        `arn:aws:sts::${ACCOUNT}:assumed-role/billing/other`,
        'arn:aws:sts::222222222222:assumed-role/billing/x',
      ),
      10,
    ),
    accountId: mostly(usually(ACCOUNT, '222222222222', '1111'), 10),
    principalOrgId: mostly(fc.constantFrom(null, 'o-a1b2c3d4e5')),
  });
  const requestContext = shaped({
    http: mostly(shaped({ method: mostly(usually('POST', 'GET', 'post'), 10), path: fc.constant('/') }), 10),
    authorizer: mostly(shaped({ iam: mostly(iam, 10) }), 10),
    requestId: fc.constant('r-1'),
  });
  const text = tokenRequests(valid).map((r) => JSON.stringify(r));
  const bodies = fc.oneof(
    { weight: 4, arbitrary: text.map((body) => ({ body, isBase64Encoded: false })) },
    { weight: 2, arbitrary: text.map((body) => ({ body: b64(body), isBase64Encoded: true })) },
    {
      weight: 3,
      arbitrary: shaped({
        body: mostly(fc.oneof(fc.string(), fc.base64String(), text), 1),
        isBase64Encoded: mostly(fc.boolean(), 1),
      }),
    },
  );
  return fc
    .tuple(
      shaped({
        version: mostly(fc.constant('2.0'), 10),
        rawPath: fc.constant('/'),
        headers: mostly(fc.dictionary(fc.string({ maxLength: 12 }), fc.string({ maxLength: 12 }), { maxKeys: 3 })),
        requestContext: mostly(requestContext, 10),
      }),
      bodies,
    )
    .map(([envelope, body]) => ({ ...envelope, ...body }));
};

describe('the token handler on random events', () => {
  let valid: IdentityProof;
  let signature: string;
  beforeAll(async () => {
    valid = await signIdentityProof({
      credentials: { accessKeyId: 'ASIAEXAMPLEEXAMPLE01', secretAccessKey: 'secret', sessionToken: 'session' },
      region: 'eu-central-1',
      audience: AUDIENCE,
      stsUrl: 'https://sts.eu-central-1.amazonaws.com/',
      signingDate: new Date(NOW),
    });
    signature = /Signature=([0-9a-f]{64})/.exec(valid.headers.authorization!)![1]!;
  });

  const iamCaller = roleSession('billing', ACCOUNT, 'fuzz');

  it('refuses a URL event whose body is an object, a number, an array, a boolean: 400 with its audit line', async () => {
    const { handler, seen } = harness();
    const request = { scopes: ['a'], identityProof: valid };
    for (const body of [request, 5, [JSON.stringify(request)], true, { length: 3 }]) {
      for (const isBase64Encoded of [false, true]) {
        const event = { ...urlEvent(request, { iam: iamCaller }), body, isBase64Encoded };
        expect(await invoke(handler, seen, event, [signature])).toEqual({
          kind: 'refused',
          status: 400,
          error: 'invalid_request',
        });
        // Grants mode: the URL event's identity is only what its sender wrote until a proof names the caller.
        expect(auditLine(seen)).toMatchObject({
          caller: 'unproven',
          urlCaller: iamCaller.userArn,
          reason: 'url_event_malformed',
          detail: 'malformed Function URL event: "body" must be a string',
        });
      }
    }
  });

  it('refuses a URL event whose isBase64Encoded is not a boolean: 400 with its audit line', async () => {
    const { handler, seen } = harness();
    const request = { scopes: ['a'], identityProof: valid };
    for (const isBase64Encoded of ['true', 1, null, {}, []]) {
      const event = { ...urlEvent(request, { iam: iamCaller }), isBase64Encoded };
      expect(await invoke(handler, seen, event, [signature])).toEqual({
        kind: 'refused',
        status: 400,
        error: 'invalid_request',
      });
      expect(auditLine(seen)).toMatchObject({
        reason: 'url_event_malformed',
        detail: 'malformed Function URL event: "isBase64Encoded" must be a boolean',
      });
    }
  });

  it('answers a token to the well-formed request the generators start from, both ways in', async () => {
    const { handler, seen } = harness();
    const request = { scopes: ['a'], identityProof: valid };
    expect(await invoke(handler, seen, request, [signature])).toEqual({ kind: 'token' });
    expect(await invoke(handler, seen, urlEvent(request, { iam: iamCaller }), [signature])).toEqual({ kind: 'token' });
    expect(await invoke(handler, seen, urlEvent(request, { iam: iamCaller, base64: true }), [signature])).toEqual({
      kind: 'token',
    });
  });

  it('answers server_error 500 with a refusal line when something fails outside the refusal path (here: writing metrics)', async () => {
    const { handler, seen } = harness({ failing: { metrics: true } });
    const request = { scopes: ['a'], identityProof: valid };
    const refusal = { error: 'server_error', error_description: 'internal error in the token broker', status: 500 };
    expect(await handler(request, { awsRequestId: 'r-1' })).toEqual(refusal);
    expect(seen.lines.map((l) => JSON.parse(l) as unknown)).toEqual([
      expect.objectContaining({
        audit: 'refused',
        requestId: 'r-1',
        caller: 'direct invoke',
        status: 500,
        reason: 'unexpected',
        detail: 'Error',
      }),
    ]);
    seen.lines.length = 0;
    const answer = await handler(urlEvent(request, { iam: iamCaller }), { awsRequestId: 'r-2' });
    expect(answer).toMatchObject({ statusCode: 500, body: JSON.stringify(refusal) });
    expect(seen.lines.map((l) => JSON.parse(l) as unknown)).toEqual([
      expect.objectContaining({
        audit: 'refused',
        requestId: 'r-2',
        caller: 'unverified',
        status: 500,
        reason: 'unexpected',
      }),
    ]);
    for (const line of seen.lines) expect(line).not.toContain(signature);
  });

  it('still answers when even the fallback log fails', async () => {
    const { handler } = harness({ failing: { metrics: true, fallbackLog: true } });
    await expect(handler({ scopes: ['a'], identityProof: valid }, {})).resolves.toMatchObject({
      error: 'server_error',
      status: 500,
    });
  });

  it('answers any JSON value or JS value sent as a direct invoke with a 4xx refusal and its audit line', async () => {
    const { handler, seen } = harness();
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.jsonValue(), fc.anything()), async (event) => {
        expect((await invoke(handler, seen, event)).kind).toBe('refused');
      }),
      runs(2000),
    );
  });

  it('answers any JSON value in every part of a Function URL envelope with an OAuth answer and, if refused, its audit line', async () => {
    const { handler, seen } = harness();
    const envelope = urlEvent({}, { iam: iamCaller });
    const parts = fc.record({
      body: junk(),
      isBase64Encoded: junk(),
      headers: junk(),
      requestContext: fc.oneof(
        junk(),
        fc.constant(envelope.requestContext),
        fc.record({ http: junk(), authorizer: junk() }),
      ),
    });
    await fc.assert(
      fc.asyncProperty(
        parts,
        fc.subarray(['body', 'isBase64Encoded', 'headers', 'requestContext'] as const),
        async (random, which) => {
          const event: Record<string, unknown> = { ...envelope };
          for (const key of which) event[key] = random[key];
          await invoke(handler, seen, event, [signature]);
        },
      ),
      runs(2000),
    );
  });

  it('answers near-valid direct requests with a token or a 4xx refusal and its audit line, and reaches both', async () => {
    const { handler, seen } = harness();
    const outcomes = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(tokenRequests(valid), async (event) => {
        const outcome = await invoke(handler, seen, event, [signature]);
        const key = outcome.kind === 'token' ? 'token' : `${outcome.status}`;
        outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      }),
      runs(3000),
    );
    // The generators reach every kind of answer, so the properties above are not vacuous.
    expect([...outcomes.keys()].sort()).toEqual(['400', '403', 'token']);
  });

  it('answers near-valid Function URL events with a token or a 4xx refusal and its audit line, and reaches each kind', async () => {
    const { handler, seen } = harness();
    const outcomes = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(urlEvents(valid), async (event) => {
        const outcome = await invoke(handler, seen, event, [signature]);
        const key = outcome.kind === 'token' ? 'token' : `${outcome.status}`;
        outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      }),
      runs(3000),
    );
    expect([...outcomes.keys()].sort()).toEqual(['400', '403', '405', 'token']);
  });
});
