import { createHash, randomUUID } from 'node:crypto';
import { KMSClient } from '@aws-sdk/client-kms';
import { type IdentityProof, signIdentityProof } from '@limitrail/token-broker-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoTokenTable } from '../../functions/lib/cache/table/dynamo-token-table';
import { TokenCipher } from '../../functions/lib/cache/table/token-cipher';
import { PROOF_MAX_AGE_MS } from '../../functions/lib/callers/identity-proof';
import { cacheKeyFor } from '../../functions/lib/domain/cache-key';
import { lifetimeOf } from '../../functions/lib/domain/cached-token';
import { systemClock } from '../../functions/lib/shared/clock';
import { roleSession, urlEvent } from '../support/fakes/url-event';
import { type BrokerStack, inProcessContainer, REGION, startBrokerStack } from '../support/stacks/broker-stack';
import {
  STS_ACCOUNT,
  STS_REGION,
  type StsStack,
  startConnectionCounter,
  startStsStack,
} from '../support/stacks/sts-stack';

/**
 * Every caller proves who it is (CALLER_AUTH=grants, the default): a direct invoke or a Function URL body carries
 * an identity proof, an STS GetCallerIdentity request signed with the caller's own session credentials, which the
 * broker replays to STS. STS here is a moto_server with request authentication on (it checks the signatures), behind
 * a proxy that counts the requests reaching it. Session credentials come from real AssumeRole calls.
 */
const AUDIENCE = 'limitrail-token-broker-test-token';
const GRANTS = [
  {
    principal: `arn:aws:iam::${STS_ACCOUNT}:role/billing`,
    client: 'limitrail',
    scopes: ['limitrail.usage.read', 'limitrail.usage.write', 'limitrail.runtime.read'],
  },
  {
    principal: `arn:aws:iam::${STS_ACCOUNT}:role/reporting`,
    client: 'limitrail',
    scopes: ['limitrail.usage.read', 'limitrail.runtime.read'],
  },
];
let stack: BrokerStack;
let sts: StsStack;
let env: Record<string, string>;
const logLines: string[] = [];
const handedOut: string[] = [];
const proofs: IdentityProof[] = [];

/** A fresh proof signed with the role's session credentials (the caller's side: examples/caller.ts). */
const proofFor = async (role: string, options: { audience?: string; signingDate?: Date; stsUrl?: string } = {}) => {
  const proof = await signIdentityProof({
    credentials: sts.credentials(role),
    region: STS_REGION,
    audience: options.audience ?? AUDIENCE,
    stsUrl: options.stsUrl ?? sts.endpoint,
    signingDate: options.signingDate,
  });
  proofs.push(proof);
  return proof;
};

/** A new container each time unless one is given: its own memory and its own verified-identity cache. */
const container = (extra: Record<string, string> = {}) => inProcessContainer({ ...env, ...extra }, logLines);
const ask = async (event: unknown, invoke = container()) => {
  const answer = await invoke(event, { awsRequestId: randomUUID() });
  if (typeof answer.access_token === 'string') handedOut.push(answer.access_token);
  if (typeof answer.body === 'string') {
    const body = JSON.parse(answer.body) as Record<string, unknown>;
    if (typeof body.access_token === 'string') handedOut.push(body.access_token);
    return { ...body, httpStatus: answer.statusCode };
  }
  return answer;
};
const upstream = () => stack.sandbox.stats().tokenRequests;
const lines = () => logLines.map((l) => JSON.parse(l) as Record<string, unknown>);
const refusal = (reason: string) => lines().filter((l) => l.audit === 'refused' && l.reason === reason);

beforeAll(async () => {
  sts = await startStsStack(['billing', 'reporting', 'nogrant']);
  stack = await startBrokerStack({
    tableName: 'tokens-identity',
    env: {
      CALLER_AUTH: 'grants',
      CALLER_PROOF_AUDIENCE: AUDIENCE,
      AWS_ENDPOINT_URL_STS: sts.endpoint,
      BROKER_CALLERS: JSON.stringify(GRANTS),
    },
  });
  env = stack.env;
  // The AWS SDK clients of in-process containers read their endpoints from the process environment.
  Object.assign(process.env, stack.env);
});
afterAll(async () => {
  await Promise.allSettled([stack?.stop(), sts?.stop()]);
});

describe('a direct invoke with an identity proof', () => {
  it('gets exactly the scopes granted to the proven role, and the audit line names the proven session', async () => {
    const answer = await ask({ scopes: ['limitrail.usage.write'], identityProof: await proofFor('billing') });
    expect(answer).toMatchObject({ token_type: 'Bearer', scope: 'limitrail.usage.write', client: 'limitrail' });
    const audit = lines()
      .filter((l) => l.audit === 'issued')
      .at(-1)!;
    expect(audit).toMatchObject({
      caller: `arn:aws:sts::${STS_ACCOUNT}:assumed-role/billing/billing-session`,
      identity: 'verified',
    });
  });

  it('refuses a granted role a scope beyond its grant, and an ungranted role every scope, the same way for configured and unconfigured scopes', async () => {
    const beyond = await ask({ scopes: ['limitrail.usage.write'], identityProof: await proofFor('reporting') });
    expect(beyond).toMatchObject({ error: 'access_denied', status: 403 });
    expect(beyond.error_description).toContain('no grant for scope "limitrail.usage.write"');
    const configured = await ask({ scopes: ['limitrail.usage.read'], identityProof: await proofFor('nogrant') });
    const unconfigured = await ask({ scopes: ['limitrail.no-such-scope'], identityProof: await proofFor('nogrant') });
    const unknownClient = await ask({ client: 'other', scopes: ['x'], identityProof: await proofFor('nogrant') });
    // Without a grant, the caller learns no client's name: it is told only about the name it gave itself.
    for (const answer of [configured, unconfigured]) {
      expect(answer).toMatchObject({ error: 'access_denied', status: 403 });
      expect(answer.error_description).toBe(
        'caller "arn:aws:sts::123456789012:assumed-role/nogrant/nogrant-session" has no grant',
      );
    }
    expect(unknownClient).toMatchObject({ error: 'access_denied', status: 403 });
    expect(unknownClient.error_description).toBe(
      'caller "arn:aws:sts::123456789012:assumed-role/nogrant/nogrant-session" has no grant for client "other"',
    );
    const named = await ask({
      client: 'limitrail',
      scopes: ['limitrail.usage.read'],
      identityProof: await proofFor('nogrant'),
    });
    expect(named.error_description).toBe(
      'caller "arn:aws:sts::123456789012:assumed-role/nogrant/nogrant-session" has no grant for client "limitrail"',
    );
    // A granted caller asking for a scope the client does not have learns no more than "not granted" either.
    const granted = await ask({ scopes: ['limitrail.no-such-scope'], identityProof: await proofFor('reporting') });
    expect(granted).toMatchObject({ error: 'access_denied', status: 403 });
  });

  it('makes one STS call for twenty requests with one proof, in one container, including concurrent ones', async () => {
    const invoke = container();
    const proof = await proofFor('billing');
    const before = sts.calls();
    const first = await Promise.all(
      Array.from({ length: 10 }, () => ask({ scopes: ['limitrail.usage.read'], identityProof: proof }, invoke)),
    );
    for (let i = 0; i < 10; i++)
      first.push(await ask({ scopes: ['limitrail.usage.read'], identityProof: proof }, invoke));
    expect(first.every((a) => a.token_type === 'Bearer')).toBe(true);
    expect(sts.calls() - before).toBe(1);
    const issued = lines()
      .filter((l) => l.audit === 'issued')
      .slice(-20);
    expect(issued.filter((l) => l.identity === 'verified')).toHaveLength(1);
    expect(issued.filter((l) => l.identity === 'cached')).toHaveLength(19);
  });

  it("reuses a verified identity only within its proof's window: asks STS again at its end, refuses the proof after", async () => {
    const proof = await proofFor('billing');
    const date = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(proof.headers['x-amz-date']!)!;
    const signedAtMs = Date.parse(`${date[1]}-${date[2]}-${date[3]}T${date[4]}:${date[5]}:${date[6]}Z`);
    const windowEndMs = signedAtMs + PROOF_MAX_AGE_MS;
    // One container whose clock the test sets for each request.
    let nowMs = signedAtMs;
    const invoke = inProcessContainer(env, logLines, { clock: { nowMs: () => nowMs } });
    const at = (ms: number) => {
      nowMs = ms;
      return ask({ scopes: ['limitrail.usage.read'], identityProof: proof }, invoke);
    };
    const before = sts.calls();
    const from = logLines.length;
    expect(await at(signedAtMs)).toMatchObject({ token_type: 'Bearer' });
    expect(await at(windowEndMs - 1)).toMatchObject({ token_type: 'Bearer' });
    expect(sts.calls() - before).toBe(1);
    // The window's last instant: the proof is still accepted, but the identity verified for it is not reused.
    expect(await at(windowEndMs)).toMatchObject({ token_type: 'Bearer' });
    expect(sts.calls() - before).toBe(2);
    expect(await at(windowEndMs + 1)).toMatchObject({ error: 'access_denied', status: 403 });
    expect(sts.calls() - before).toBe(2);
    const audit = logLines.slice(from).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(audit.filter((l) => l.audit === 'issued').map((l) => l.identity)).toEqual([
      'verified',
      'cached',
      'verified',
    ]);
    expect(audit).toContainEqual(expect.objectContaining({ audit: 'refused', reason: 'proof_expired' }));
  });
});

describe('proofs refused', () => {
  const signedWithout = async (change: (proof: IdentityProof) => void) => {
    const proof = structuredClone(await proofFor('billing'));
    change(proof);
    return proof;
  };

  it.each([
    ['no proof at all', async () => undefined, 403, 'access_denied', 'proof_missing', 'an identity proof is required'],
    [
      'a proof for another broker (audience)',
      () => proofFor('billing', { audience: 'limitrail-token-broker-prod-token' }),
      403,
      'access_denied',
      'proof_wrong_audience',
      'does not name this broker',
    ],
    [
      'an audience header added after signing (not signed)',
      async () => {
        const proof = await signIdentityProof({
          credentials: sts.credentials('billing'),
          region: STS_REGION,
          audience: 'placeholder',
          stsUrl: sts.endpoint,
        });
        proof.headers.authorization = proof.headers.authorization!.replace(';x-limitrail-broker-audience', '');
        proof.headers['x-limitrail-broker-audience'] = AUDIENCE;
        proofs.push(proof);
        return proof;
      },
      403,
      'access_denied',
      'proof_audience_unsigned',
      'is not signed',
    ],
    [
      'a proof signed 6 minutes ago',
      () => proofFor('billing', { signingDate: new Date(Date.now() - 6 * 60_000) }),
      403,
      'access_denied',
      'proof_expired',
      'more than 5 minutes ago',
    ],
    [
      'a proof dated 2 minutes ahead',
      () => proofFor('billing', { signingDate: new Date(Date.now() + 2 * 60_000) }),
      403,
      'access_denied',
      'proof_from_future',
      'in the future',
    ],
    [
      'another STS action',
      () => signedWithout((p) => (p.body = 'Action=GetSessionToken&Version=2011-06-15')),
      403,
      'access_denied',
      'proof_not_get_caller_identity',
      'GetCallerIdentity',
    ],
    [
      'a tampered signature (STS refuses it)',
      () =>
        signedWithout(
          (p) => (p.headers.authorization = p.headers.authorization!.replace(/.$/, (c) => (c === '0' ? '1' : '0'))),
        ),
      403,
      'access_denied',
      'proof_refused_by_sts',
      'SignatureDoesNotMatch',
    ],
    [
      'a proof that is not an object',
      async () => 'AWS4-HMAC-SHA256 ...',
      400,
      'invalid_request',
      'proof_malformed',
      '"identityProof" must be an object',
    ],
  ])('refuses %s, writing nothing', async (_name, makeProof, status, error, reason, fragment) => {
    const proof = await makeProof();
    const items = JSON.stringify(await stack.scanTable());
    const before = upstream();
    const answer = await ask({
      scopes: ['limitrail.usage.read'],
      ...(proof === undefined ? {} : { identityProof: proof }),
    });
    expect(answer).toMatchObject({ error, status });
    expect(answer.error_description).toContain(fragment);
    expect(refusal(reason).length).toBeGreaterThan(0);
    expect(upstream()).toBe(before);
    expect(JSON.stringify(await stack.scanTable())).toBe(items);
  });

  it('never connects to a host the caller chose: non-STS URLs are refused before any connection', async () => {
    const counter = await startConnectionCounter();
    try {
      const before = sts.calls();
      for (const url of [
        counter.url,
        'https://sts.example.com/',
        'https://sts.us-east-1.amazonaws.com.evil.example/',
        `${sts.endpoint}/?Action=GetCallerIdentity`,
        `${sts.endpoint}/other`,
      ]) {
        const answer = await ask({
          scopes: ['limitrail.usage.read'],
          identityProof: await proofFor('billing', { stsUrl: url }),
        });
        expect(answer).toMatchObject({ error: 'access_denied', status: 403 });
        expect(answer.error_description).toContain('not an AWS STS endpoint');
      }
      expect(counter.connections()).toBe(0);
      expect(sts.calls()).toBe(before);
    } finally {
      await counter.stop();
    }
  });

  it('answers temporarily_unavailable (never a token, never a 403) while STS is down, failing or too slow', async () => {
    for (const mode of ['down', 'failing', 'slow'] as const) {
      sts.setMode(mode);
      try {
        const answer = await ask({ scopes: ['limitrail.usage.read'], identityProof: await proofFor('billing') });
        expect(answer).toMatchObject({ error: 'temporarily_unavailable', status: 503 });
      } finally {
        sts.setMode('up');
      }
    }
    expect(refusal('sts_unavailable').length).toBeGreaterThanOrEqual(3);
    const after = await ask({ scopes: ['limitrail.usage.read'], identityProof: await proofFor('billing') });
    expect(after.token_type).toBe('Bearer');
  }, 20_000);
});

describe('the Function URL', () => {
  const billingSession = roleSession('billing', STS_ACCOUNT, 'another-session');

  it('serves a URL caller whose proof names the same principal (another session of its role)', async () => {
    const answer = await ask(
      urlEvent({ scopes: ['limitrail.usage.read'], identityProof: await proofFor('billing') }, { iam: billingSession }),
    );
    expect(answer).toMatchObject({ httpStatus: 200, token_type: 'Bearer' });
  });

  it('refuses a URL call whose authorizer names another principal than the proof', async () => {
    const answer = await ask(
      urlEvent(
        { scopes: ['limitrail.usage.read'], identityProof: await proofFor('reporting') },
        { iam: billingSession },
      ),
    );
    expect(answer).toMatchObject({ httpStatus: 403, error: 'access_denied' });
    expect(refusal('proof_caller_mismatch').at(-1)).toMatchObject({
      caller: `arn:aws:sts::${STS_ACCOUNT}:assumed-role/reporting/reporting-session`,
      urlCaller: billingSession.userArn,
    });
  });

  it('refuses a hand-made URL-shaped event without a proof that names a granted principal, and blames nobody', async () => {
    const answer = await ask(urlEvent({ scopes: ['limitrail.usage.write'] }, { iam: billingSession }));
    expect(answer).toMatchObject({ httpStatus: 403, error: 'access_denied' });
    expect(answer.error_description).toContain('identity proof is required');
    expect(lines().filter((l) => l.audit === 'issued' && l.caller === billingSession.userArn)).toHaveLength(0);
    // The refusal's audit line does not blame the principal the event names: that is only what its sender wrote.
    expect(refusal('proof_missing').at(-1)).toMatchObject({ caller: 'unproven', urlCaller: billingSession.userArn });
  });
});

describe("tokens broader than a caller's grants", () => {
  it('hands a token whose granted scope goes beyond the grant only to callers entitled to all of it', async () => {
    stack.sandbox.setExtraGrantedScopes(['limitrail.usage.write']);
    try {
      const before = upstream();
      const narrow = await ask({ scopes: ['limitrail.runtime.read'], identityProof: await proofFor('reporting') });
      expect(narrow).toMatchObject({ error: 'access_denied', status: 403 });
      expect(refusal('token_scope_beyond_grant').length).toBeGreaterThan(0);
      // The token stays cached and serves a caller whose grants cover every scope it carries.
      const broad = await ask({ scopes: ['limitrail.runtime.read'], identityProof: await proofFor('billing') });
      expect(broad).toMatchObject({ token_type: 'Bearer', scope: 'limitrail.runtime.read limitrail.usage.write' });
      expect(upstream() - before).toBe(1);
    } finally {
      stack.sandbox.setExtraGrantedScopes([]);
    }
  });

  it('refuses a cached token whose stored scopes go beyond the grant (table hit)', async () => {
    const kms = new KMSClient({
      endpoint: stack.moto.endpoint,
      region: REGION,
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    });
    const store = new DynamoTokenTable(
      stack.dynamodb,
      stack.tableName,
      new TokenCipher(kms, stack.kmsKeyId, systemClock, 300),
    );
    const client = stack.sandbox.clients[0]!;
    // One cache key only the billing role's requests share with reporting: reporting asks for read alone.
    const key = cacheKeyFor(stack.sandbox.tokenUrl, client.clientId, ['limitrail.usage.read']);
    await store.writeToken(
      key,
      {
        accessToken: 'seeded.broad.token',
        scopes: ['limitrail.usage.read', 'limitrail.usage.write'],
        ...lifetimeOf(Date.now(), 3600),
      },
      'limitrail',
    );
    kms.destroy();
    const narrow = await ask({ scopes: ['limitrail.usage.read'], identityProof: await proofFor('reporting') });
    expect(narrow).toMatchObject({ error: 'access_denied', status: 403 });
  });
});

describe('configuration and logs', () => {
  it('refuses organization grants in grants mode at configuration load, saying to grant accounts', async () => {
    const answer = await ask(
      { scopes: ['limitrail.usage.read'], identityProof: await proofFor('billing') },
      container({
        BROKER_CALLERS: JSON.stringify([
          { principal: 'o-a1b2c3d4e5', client: 'limitrail', scopes: ['limitrail.usage.read'] },
        ]),
      }),
    );
    expect(answer).toMatchObject({ error: 'server_error', status: 500 });
    const logged = lines()
      .filter((l) => l.message === 'broker configuration invalid')
      .at(-1);
    expect(String(logged?.detail)).toContain('grant the accounts instead');
  });

  it('in invoke-permission mode warns once per cold start, serves proof-less direct invokes, and holds proofs to their grants', async () => {
    const before = lines().length;
    const invoke = container({ CALLER_AUTH: 'invoke-permission' });
    const open = await ask({ scopes: ['limitrail.accounts.read'] }, invoke);
    expect(open.token_type).toBe('Bearer');
    const held = await ask({ scopes: ['limitrail.accounts.read'], identityProof: await proofFor('billing') }, invoke);
    expect(held).toMatchObject({ error: 'access_denied', status: 403 });
    const warnings = lines()
      .slice(before)
      .filter((l) => l.level === 'WARN' && String(l.message).startsWith('CALLER_AUTH=invoke-permission'));
    expect(warnings).toHaveLength(1);
  });

  it('counts verifications, cache hits and failures by reason in the EMF metrics', () => {
    const emf = lines().filter((l) => l._aws);
    const total = (name: string) =>
      emf.reduce((n, l) => n + (typeof l[name] === 'number' ? (l[name] as number) : 0), 0);
    expect(total('IdentityVerifications')).toBeGreaterThan(5);
    expect(total('IdentityCacheHits')).toBeGreaterThanOrEqual(19);
    expect(total('IdentityFailures')).toBeGreaterThan(5);
    expect(total('IdentityFailure.proof_missing')).toBeGreaterThan(0);
    expect(total('IdentityFailure.proof_refused_by_sts')).toBe(1);
  });

  it('logs no proof signature, session credential, client secret or token', () => {
    const logs = logLines.join('\n');
    expect(proofs.length).toBeGreaterThan(20);
    for (const proof of proofs) {
      const signature = /Signature=([0-9a-f]{64})/.exec(proof.headers.authorization ?? '')?.[1];
      if (signature) expect(logs).not.toContain(signature);
      expect(logs).not.toContain(proof.headers.authorization);
    }
    for (const role of ['billing', 'reporting', 'nogrant']) {
      const { secretAccessKey, sessionToken } = sts.credentials(role);
      expect(logs).not.toContain(secretAccessKey);
      expect(logs).not.toContain(sessionToken!);
    }
    expect(logs).not.toContain(stack.sandbox.clients[0]!.clientSecret);
    expect(handedOut.length).toBeGreaterThan(20);
    for (const token of handedOut) expect(logs).not.toContain(token);
    // Fingerprints are what the audit trail keeps.
    expect(logs).toContain(createHash('sha256').update(handedOut[0]!).digest('hex').slice(0, 12));
  });
});
