import { createHash, randomUUID } from 'node:crypto';
import { type IdentityProof, signIdentityProof } from '@limitrail/token-broker-client';
import { Hash } from '@smithy/core/serde';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_PROOFS_PER_PRINCIPAL } from '../../functions/lib/callers/verified-identities';
import { createPrewarmHandler } from '../../functions/lib/handlers/prewarm-handler';
import { createRuntime, loggerFromEnv, type RuntimeOverrides } from '../../functions/lib/runtime';
import { urlEvent } from '../support/fakes/url-event';
import { captureLogLines } from '../support/log-capture';
import { type BrokerStack, inProcessContainer, SECRET_ID, startBrokerStack } from '../support/stacks/broker-stack';
import { STS_ACCOUNT, STS_REGION, type StsStack, startStsStack } from '../support/stacks/sts-stack';

/**
 * What one caller can cost, flush, bloat or learn, against the real local stack: the broker in grants mode, STS a
 * moto_server that checks every proof's signature behind a proxy that counts the calls reaching it (sts-stack.ts),
 * the LimitRail sandbox counting the token requests that reach it. A forced-refresh budget per caller and client across
 * scope sets; an identity cache that unsigned padding cannot multiply and one principal cannot flush; refusal lines that
 * a hand-made event cannot bloat; a prewarm answer that names nothing.
 */
const AUDIENCE = 'limitrail-token-broker-test-token';
const BILLING_SCOPES = ['limitrail.usage.read', 'limitrail.usage.write', 'limitrail.runtime.read'];
const GRANTS = [
  { principal: `arn:aws:iam::${STS_ACCOUNT}:role/billing`, client: 'limitrail', scopes: BILLING_SCOPES },
  {
    principal: `arn:aws:iam::${STS_ACCOUNT}:role/reporting`,
    client: 'limitrail',
    scopes: ['limitrail.usage.read', 'limitrail.runtime.read'],
  },
];
const sha256 = Hash.bind(null, 'sha256');
const GET_CALLER_IDENTITY = 'Action=GetCallerIdentity&Version=2011-06-15';

let stack: BrokerStack;
let sts: StsStack;
const logLines: string[] = [];
const handedOut: string[] = [];

const proofFor = (role: string) =>
  signIdentityProof({
    credentials: sts.credentials(role),
    region: STS_REGION,
    audience: AUDIENCE,
    stsUrl: sts.endpoint,
  });
/** Another valid proof of the role each time: `variant` goes into a header the signature covers. */
const variantProof = async (role: string, variant: number): Promise<IdentityProof> => {
  const url = new URL(sts.endpoint);
  const signer = new SignatureV4({ service: 'sts', region: STS_REGION, credentials: sts.credentials(role), sha256 });
  const signed = await signer.sign({
    method: 'POST',
    protocol: url.protocol,
    hostname: url.hostname,
    port: Number(url.port),
    path: '/',
    headers: {
      host: url.host,
      'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
      'x-limitrail-broker-audience': AUDIENCE,
      'x-variant': String(variant),
    },
    body: GET_CALLER_IDENTITY,
  });
  return { url: `${url.origin}/`, headers: signed.headers as Record<string, string>, body: GET_CALLER_IDENTITY };
};

const container = (env: Record<string, string> = {}, overrides: RuntimeOverrides = {}) =>
  inProcessContainer({ ...stack.env, ...env }, logLines, overrides);
type Invoke = ReturnType<typeof container>;
const ask = async (event: unknown, invoke: Invoke = container()) => {
  const answer = await invoke(event, { awsRequestId: randomUUID() });
  const body =
    typeof answer.body === 'string'
      ? { ...(JSON.parse(answer.body) as Record<string, unknown>), httpStatus: answer.statusCode }
      : answer;
  if (typeof body.access_token === 'string') handedOut.push(body.access_token);
  return body;
};
const upstream = () => stack.sandbox.stats().tokenRequests;
const lines = () => logLines.map((l) => JSON.parse(l) as Record<string, unknown>);
const sha256Hex = (text: string) => createHash('sha256').update(text).digest('hex');
/** Every non-empty subset of the scopes, each once. */
const subsets = (scopes: string[]): string[][] =>
  Array.from({ length: 2 ** scopes.length - 1 }, (_, mask) => scopes.filter((_, i) => ((mask + 1) >> i) & 1));

beforeAll(async () => {
  sts = await startStsStack(['billing', 'reporting']);
  stack = await startBrokerStack({
    tableName: 'tokens-hostile',
    env: {
      CALLER_AUTH: 'grants',
      CALLER_PROOF_AUDIENCE: AUDIENCE,
      AWS_ENDPOINT_URL_STS: sts.endpoint,
      BROKER_CALLERS: JSON.stringify(GRANTS),
    },
  });
  Object.assign(process.env, stack.env);
}, 120_000);
afterAll(async () => {
  await Promise.allSettled([stack?.stop(), sts?.stop()]);
});

describe('forced refreshes of every scope set a caller is granted', () => {
  it('make one upstream request per interval for that caller and client; another caller has a budget of its own', async () => {
    const sets = subsets(BILLING_SCOPES);
    expect(sets).toHaveLength(7);
    const proof = await proofFor('billing');
    const current: string[] = [];
    for (const scopes of sets) current.push((await ask({ scopes, identityProof: proof })).access_token as string);
    const before = upstream();
    // Each from a new container: the budget lives in the table, not in a container's memory.
    const answers = [];
    for (const [i, scopes] of sets.entries()) {
      answers.push(
        await ask({ scopes, forceRefresh: true, rejectedTokenSha256: sha256Hex(current[i]!), identityProof: proof }),
      );
    }
    expect(upstream() - before).toBe(1);
    expect(answers[0]).toMatchObject({ token_type: 'Bearer' });
    expect(answers[0]!.access_token).not.toBe(current[0]);
    for (const refused of answers.slice(1)) {
      expect(refused).toMatchObject({ error: 'temporarily_unavailable', status: 503 });
      expect(refused.retryAfterSeconds).toBeGreaterThanOrEqual(1);
      expect(refused.retryAfterSeconds).toBeLessThanOrEqual(31);
    }
    const refusals = lines().filter((l) => l.audit === 'refused' && l.reason === 'force_refresh_budget');
    expect(refusals).toHaveLength(6);
    expect(refusals[0]).toMatchObject({ caller: `arn:aws:sts::${STS_ACCOUNT}:assumed-role/billing/billing-session` });

    // Another principal's forced refresh of one of those scope sets fetches: its budget is its own.
    const runtimeOnly = sets.findIndex((scopes) => scopes.join() === 'limitrail.runtime.read');
    const reporting = await ask({
      scopes: sets[runtimeOnly]!,
      forceRefresh: true,
      identityProof: await proofFor('reporting'),
    });
    expect(reporting.token_type).toBe('Bearer');
    expect(upstream() - before).toBe(2);

    // Once the interval has passed, the caller fetches once more, and only once. The scope set the other caller
    // refreshed is answered its new token without an upstream request, spending nothing.
    const later = () => container({}, { clock: { nowMs: () => Date.now() + 31_000 } });
    const next = new Map<number, Record<string, unknown>>();
    for (const [i, scopes] of sets.entries()) {
      if (i === 0) continue;
      next.set(
        i,
        await ask(
          { scopes, forceRefresh: true, rejectedTokenSha256: sha256Hex(current[i]!), identityProof: proof },
          later(),
        ),
      );
    }
    expect(upstream() - before).toBe(3);
    expect(next.get(runtimeOnly)!.access_token).toBe(reporting.access_token);
    next.delete(runtimeOnly);
    const rest = [...next.values()];
    expect(rest.filter((a) => a.token_type === 'Bearer')).toHaveLength(1);
    expect(rest.filter((a) => a.error === 'temporarily_unavailable')).toHaveLength(4);
  }, 60_000);
});

describe('the verified-identity cache', () => {
  it('makes one STS call for 40 variants of one proof padded with unsigned headers, and sends STS none of them', async () => {
    const invoke = container();
    const proof = await proofFor('billing');
    const before = sts.calls();
    for (let i = 0; i < 40; i++) {
      const padded = {
        ...proof,
        headers: {
          ...proof.headers,
          'x-padding': 'p'.repeat(i + 1),
          ...(i % 2 === 0 ? { accept: 'application/json' } : { 'x-amz-target': `Padding.${i}` }),
        },
      };
      expect(await ask({ scopes: ['limitrail.usage.read'], identityProof: padded }, invoke)).toMatchObject({
        token_type: 'Bearer',
      });
    }
    expect(sts.calls() - before).toBe(1);
  });

  it("does not let 1000 valid proofs of one principal evict another principal's entry", async () => {
    const invoke = container();
    const reporting = await proofFor('reporting');
    const scopes = ['limitrail.usage.read'];
    expect(await ask({ scopes, identityProof: reporting }, invoke)).toMatchObject({ token_type: 'Bearer' });
    const before = sts.calls();
    for (let i = 0; i < 1000; i++) {
      const answer = await ask({ scopes, identityProof: await variantProof('billing', i) }, invoke);
      if (answer.token_type !== 'Bearer') throw new Error(`variant ${i}: ${JSON.stringify(answer)}`);
    }
    expect(sts.calls() - before).toBe(1000);
    // The other principal's proof is still verified: no STS call.
    expect(await ask({ scopes, identityProof: reporting }, invoke)).toMatchObject({ token_type: 'Bearer' });
    expect(sts.calls() - before).toBe(1000);
    expect(
      lines()
        .filter((l) => l.audit === 'issued')
        .at(-1),
    ).toMatchObject({ identity: 'cached' });
    // The principal's own recent proofs are kept (at most MAX_PROOFS_PER_PRINCIPAL of them), its older ones not.
    await ask({ scopes, identityProof: await variantProof('billing', 999) }, invoke);
    expect(sts.calls() - before).toBe(1000);
    await ask({ scopes, identityProof: await variantProof('billing', 999 - MAX_PROOFS_PER_PRINCIPAL) }, invoke);
    expect(sts.calls() - before).toBe(1001);
  }, 180_000);
});

describe('refusal lines of hand-made URL-shaped events', () => {
  const hostile = `arn:aws:sts::${STS_ACCOUNT}:assumed-role/billing/${'x'.repeat(200 * 1024)}`;

  it.each([
    ['grants', 'a 200 KB userArn', { userArn: hostile, accountId: STS_ACCOUNT }],
    [
      'grants',
      'a 200 KB principalOrgId',
      {
        userArn: `arn:aws:iam::${STS_ACCOUNT}:user/ci`,
        accountId: STS_ACCOUNT,
        principalOrgId: `o-${'a'.repeat(200 * 1024)}`,
      },
    ],
    ['invoke-permission', 'a 200 KB userArn', { userArn: hostile, accountId: STS_ACCOUNT }],
  ])('in %s mode, with %s: under 4 KB, decision fields first and intact', async (mode, _what, iam) => {
    const invoke = container({ CALLER_AUTH: mode });
    const from = logLines.length;
    const answer = await ask(
      urlEvent({ scopes: ['limitrail.usage.read'], identityProof: await proofFor('billing') }, { iam: iam as never }),
      invoke,
    );
    expect(answer).toMatchObject({ httpStatus: 403, error: 'access_denied' });
    const raw = logLines.slice(from).find((l) => l.includes('"audit":"refused"'))!;
    expect(Buffer.byteLength(raw)).toBeLessThan(4096);
    const line = JSON.parse(raw) as Record<string, unknown>;
    const keys = Object.keys(line);
    const own = keys.slice(keys.indexOf('sampling_rate') + 1);
    expect(own.slice(0, 4)).toEqual(['audit', 'error', 'status', 'reason']);
    expect(line).toMatchObject({ audit: 'refused', error: 'access_denied', status: 403, reason: 'caller_unverified' });
    if (iam.userArn === hostile) expect(line.urlCaller).toBe(`invalid (${hostile.length} characters)`);
  });
});

describe('the prewarm function', () => {
  it('answers counts only: no client name, scope set or secret id, the details in its log line', async () => {
    const clients = JSON.parse(stack.env.BROKER_CLIENTS!) as Record<string, Record<string, unknown>>;
    const env = {
      ...stack.env,
      BROKER_CLIENTS: JSON.stringify({
        limitrail: {
          ...clients.limitrail,
          scopes: [...(clients.limitrail!.scopes as string[]), 'limitrail.admin'],
          // A set nothing fetched yet, and one the sandbox refuses.
          prewarm: [['limitrail.accounts.read', 'limitrail.usage.read'], ['limitrail.admin']],
        },
      }),
    };
    captureLogLines(logLines);
    const from = logLines.length;
    const prewarm = createPrewarmHandler(
      () => createRuntime(env),
      () => loggerFromEnv(env),
    );
    const answer = await prewarm({}, { awsRequestId: 'prewarm-test', getRemainingTimeInMillis: () => 15_000 });
    expect(answer).toEqual({ refreshed: 1, fresh: 0, inProgress: 0, failed: 1, skipped: 0 });
    const text = JSON.stringify(answer);
    for (const name of ['limitrail', 'usage', 'admin', SECRET_ID]) expect(text).not.toContain(name);
    const run = logLines
      .slice(from)
      .map((l) => JSON.parse(l) as { message?: string; results?: Record<string, string>[] })
      .find((l) => l.message === 'prewarm run')!;
    expect(run.results).toContainEqual(
      expect.objectContaining({ client: 'limitrail', scopes: 'limitrail.admin', outcome: 'failed' }),
    );
  });
});

describe('logs of the whole run', () => {
  it('contain no token handed out', () => {
    expect(handedOut.length).toBeGreaterThan(1000);
    const all = logLines.join('\n');
    for (const token of new Set(handedOut)) expect(all).not.toContain(token);
  });
});
