import { createHash, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { type IdentityProof, signIdentityProof } from '@limitrail/token-broker-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { roleSession, urlEvent } from '../support/fakes/url-event';
import { type Container, startContainer } from '../support/process/container';
import { type BrokerStack, inProcessContainer, startBrokerStack } from '../support/stacks/broker-stack';
import { type CallersValue, putCallersParameter } from '../support/stacks/callers-parameter';
import { type MotoServer, startMoto } from '../support/stacks/moto';
import { STS_ACCOUNT, STS_REGION, type StsStack, startStsStack } from '../support/stacks/sts-stack';

/**
 * Callers and revocations as data (BROKER_CALLERS_PARAMETER): the grants and the revoked principals in an SSM
 * parameter, which every container reads again within CALLERS_MAX_AGE_SEC (1 s here), with no deploy and no restart.
 * Real components: SSM is a moto_server of its own (so that it can go down alone), STS a moto_server that checks
 * every proof's signature (sts-stack.ts), DynamoDB, KMS and Secrets Manager the broker stack's moto, tokens from the
 * LimitRail sandbox. The containers are in-process runtimes and one OS process running the built bundle
 * (dist/token/handler.js). No timed assertion: a change is awaited by polling, a bounded number of times, until
 * every container answers as expected; each test asserts the answers before and after.
 */
const AUDIENCE = 'limitrail-token-broker-test-token';
const NAME = '/limitrail-token-broker/test/callers';
const BILLING_ROLE = `arn:aws:iam::${STS_ACCOUNT}:role/billing`;
const BILLING_SESSION = `arn:aws:sts::${STS_ACCOUNT}:assumed-role/billing/billing-session`;
const GRANTS = [
  { principal: BILLING_ROLE, client: 'limitrail', scopes: ['limitrail.usage.read', 'limitrail.usage.write'] },
  { principal: `arn:aws:iam::${STS_ACCOUNT}:role/reporting`, client: 'limitrail', scopes: ['limitrail.usage.read'] },
];
const WRITE = { scopes: ['limitrail.usage.write'] };
const READ = { scopes: ['limitrail.usage.read'] };
/** Polls at most this many times, this far apart: far beyond a 1 s max age, and bounded. */
const POLLS = 100;
const POLL_INTERVAL_MS = 100;

let sts: StsStack;
let ssm: MotoServer;
let stack: BrokerStack;
let env: Record<string, string>;
const processes: Container[] = [];
const logLines: string[] = [];
const handedOut: string[] = [];
const proofs: IdentityProof[] = [];

type Answer = Record<string, unknown>;
type Ask = (event: unknown) => Promise<Answer>;

const setCallers = (value: CallersValue | string) =>
  putCallersParameter({ endpoint: ssm.endpoint, region: STS_REGION, name: NAME }, value);

const proofFor = async (role: string) => {
  const proof = await signIdentityProof({
    credentials: sts.credentials(role),
    region: STS_REGION,
    audience: AUDIENCE,
    stsUrl: sts.endpoint,
  });
  proofs.push(proof);
  return proof;
};

/** The answer, a URL answer's body (with its HTTP status) unwrapped; every token handed out is kept. */
const unwrap = (answer: Answer): Answer => {
  const body = typeof answer.body === 'string' ? (JSON.parse(answer.body) as Answer) : answer;
  if (typeof body.access_token === 'string') handedOut.push(body.access_token);
  return typeof answer.body === 'string' ? { ...body, httpStatus: answer.statusCode } : body;
};

/** An in-process container (its own runtime, caches and clients). */
const inProcess = (extra: Record<string, string> = {}): Ask => {
  const invoke = inProcessContainer({ ...env, ...extra }, logLines);
  return async (event) => unwrap(await invoke(event, { awsRequestId: randomUUID() }));
};

/** A container as an OS process running the built bundle. */
const osProcess = async (): Promise<Ask> => {
  const container = await startContainer('token', env);
  processes.push(container);
  return async (event) => unwrap((await container.invoke(event)) as Answer);
};

/** Asks until `done` holds for the answer (at most POLLS times); returns every answer, the last one last. */
const askUntil = async (ask: () => Promise<Answer>, done: (a: Answer) => boolean): Promise<Answer[]> => {
  const answers = [await ask()];
  for (let i = 1; i < POLLS && !done(answers.at(-1)!); i += 1) {
    await sleep(POLL_INTERVAL_MS);
    answers.push(await ask());
  }
  return answers;
};

const served = (a: Answer) => a.token_type === 'Bearer';
const revoked = (a: Answer) => a.error === 'access_denied' && String(a.error_description).includes('is revoked');
const lines = () =>
  [...logLines, ...processes.flatMap((p) => p.logs().split('\n'))]
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Answer);
const emfTotal = (name: string) =>
  lines()
    .filter((l) => l._aws)
    .reduce((n, l) => n + (typeof l[name] === 'number' ? (l[name] as number) : 0), 0);

beforeAll(async () => {
  [sts, ssm] = await Promise.all([startStsStack(['billing', 'reporting']), startMoto()]);
  stack = await startBrokerStack({
    tableName: 'tokens-callers-parameter',
    env: {
      CALLER_AUTH: 'grants',
      CALLER_PROOF_AUDIENCE: AUDIENCE,
      AWS_ENDPOINT_URL_STS: sts.endpoint,
      AWS_ENDPOINT_URL_SSM: ssm.endpoint,
      BROKER_CALLERS_PARAMETER: NAME,
      CALLERS_MAX_AGE_SEC: '1',
    },
  });
  env = stack.env;
  // The AWS SDK clients of in-process containers read their endpoints from the process environment.
  Object.assign(process.env, stack.env);
  await setCallers({ callers: GRANTS, revoked: [] });
});
afterAll(async () => {
  await Promise.allSettled(processes.map((p) => p.stop()));
  await Promise.allSettled([stack?.stop(), sts?.stop(), ssm?.stop()]);
});

describe('a revocation in the callers parameter', () => {
  it('refuses a revoked session in two warm containers within CALLERS_MAX_AGE_SEC, with no restart, direct and through the URL', async () => {
    const [direct, bundled] = [inProcess(), await osProcess()];
    const billing = await proofFor('billing');
    const viaUrl = () =>
      urlEvent({ ...WRITE, identityProof: billing }, { iam: roleSession('billing', STS_ACCOUNT, 'billing-session') });
    const askDirect = () => direct({ ...WRITE, identityProof: billing });
    const askBundled = () => bundled(viaUrl());
    expect(await askDirect()).toMatchObject({ token_type: 'Bearer', scope: 'limitrail.usage.write' });
    expect(await askBundled()).toMatchObject({ token_type: 'Bearer', httpStatus: 200 });

    await setCallers({ callers: GRANTS, revoked: [BILLING_SESSION] });
    const [directAnswers, bundledAnswers] = await Promise.all([
      askUntil(askDirect, revoked),
      askUntil(askBundled, revoked),
    ]);
    for (const answers of [directAnswers, bundledAnswers]) {
      // Served until the container read the change, refused from then on.
      const first = answers.findIndex(revoked);
      expect(first).toBeGreaterThanOrEqual(0);
      expect(answers.slice(0, first).every(served)).toBe(true);
    }
    expect(directAnswers.at(-1)).toEqual({
      error: 'access_denied',
      status: 403,
      error_description: `caller "${BILLING_SESSION}" is revoked; ask the platform team`,
    });
    expect(bundledAnswers.at(-1)).toMatchObject({ error: 'access_denied', status: 403, httpStatus: 403 });

    // Before any grant is looked at: a scope it has no grant for is refused as revoked too, not as ungranted.
    expect(await direct({ scopes: ['limitrail.accounts.read'], identityProof: billing })).toMatchObject({
      error_description: `caller "${BILLING_SESSION}" is revoked; ask the platform team`,
    });
    // Everyone else is served as before, in both containers.
    const reporting = await proofFor('reporting');
    expect(await direct({ ...READ, identityProof: reporting })).toMatchObject({ token_type: 'Bearer' });
    expect(await bundled({ ...READ, identityProof: reporting })).toMatchObject({ token_type: 'Bearer' });

    const audit = lines().filter((l) => l.audit === 'refused' && l.reason === 'caller_revoked');
    expect(audit.length).toBeGreaterThanOrEqual(3);
    for (const line of audit) {
      expect(line).toMatchObject({ caller: BILLING_SESSION, error: 'access_denied', status: 403 });
    }
  });

  it('revokes every session of a revoked role, and serves it again once the revocation is lifted', async () => {
    const ask = inProcess();
    const billing = await proofFor('billing');
    await setCallers({ callers: GRANTS, revoked: [BILLING_ROLE] });
    const refused = await askUntil(() => ask({ ...READ, identityProof: billing }), revoked);
    expect(refused.at(-1)).toMatchObject({
      error_description: `caller "${BILLING_SESSION}" is revoked ("${BILLING_ROLE}"); ask the platform team`,
    });
    await setCallers({ callers: GRANTS, revoked: [] });
    const again = await askUntil(() => ask({ ...READ, identityProof: billing }), served);
    expect(again.at(-1)).toMatchObject({ token_type: 'Bearer', scope: 'limitrail.usage.read' });
    expect(again.slice(0, -1).every(revoked)).toBe(true);
  });
});

describe('an invalid value of the callers parameter', () => {
  it('keeps the last valid value in a warm container, answers server_error in a cold one, and logs the problem', async () => {
    const warm = inProcess();
    const billing = await proofFor('billing');
    expect(await warm({ ...WRITE, identityProof: billing })).toMatchObject({ token_type: 'Bearer' });
    const invalidBefore = lines().filter((l) => l.message === 'callers parameter invalid').length;

    // A grant for a scope the client does not have: the whole value is refused, not just that grant.
    await setCallers({ callers: [{ ...GRANTS[0], scopes: ['limitrail.usage.wrte'] }], revoked: [BILLING_SESSION] });
    const invalidLogged = () => lines().filter((l) => l.message === 'callers parameter invalid').length > invalidBefore;
    const answers = await askUntil(
      () => warm({ ...WRITE, identityProof: billing }),
      () => invalidLogged(),
    );
    expect(invalidLogged()).toBe(true);
    expect(answers.every(served)).toBe(true);
    expect(lines().findLast((l) => l.message === 'callers parameter invalid')).toMatchObject({
      level: 'ERROR',
      parameter: NAME,
      problem: expect.stringContaining("callers[0].scopes[0] must be one of the client's scopes"),
      keeping: 'the last valid value',
    });
    expect(await warm({ ...WRITE, identityProof: billing })).toMatchObject({ token_type: 'Bearer' });

    const cold = inProcess();
    expect(await cold({ ...WRITE, identityProof: billing })).toEqual({
      error: 'server_error',
      status: 500,
      error_description:
        'the broker is misconfigured (its callers parameter cannot be used); the platform team can find the cause in its logs',
    });
    expect(emfTotal('CallersParameterInvalid')).toBeGreaterThanOrEqual(2);
    expect(emfTotal('CallersStale')).toBeGreaterThanOrEqual(1);

    // Fixed: the cold container serves without a restart.
    await setCallers({ callers: GRANTS, revoked: [] });
    const fixed = await askUntil(() => cold({ ...WRITE, identityProof: billing }), served);
    expect(fixed.at(-1)).toMatchObject({ token_type: 'Bearer' });
  });

  it('refuses to start with both BROKER_CALLERS and BROKER_CALLERS_PARAMETER set', async () => {
    const both = inProcess({ BROKER_CALLERS: JSON.stringify(GRANTS) });
    const answer = await both({ ...WRITE, identityProof: await proofFor('billing') });
    expect(answer).toMatchObject({ error: 'server_error', status: 500 });
    expect(String(answer.error_description)).toMatch(/^the broker is misconfigured/);
    expect(lines().findLast((l) => l.message === 'broker configuration invalid')).toMatchObject({
      reason: 'config_invalid',
      detail: expect.stringContaining('BROKER_CALLERS and BROKER_CALLERS_PARAMETER are both set'),
    });
  });
});

describe('SSM down', () => {
  it('keeps serving in a warm container from the last valid value, and answers 503 (no token) in a cold one', async () => {
    const warm = inProcess();
    const billing = await proofFor('billing');
    expect(await warm({ ...WRITE, identityProof: billing })).toMatchObject({ token_type: 'Bearer' });
    const unreadable = () => lines().some((l) => l.message === 'callers parameter unreadable');
    expect(unreadable()).toBe(false);

    await ssm.stop();
    const answers = await askUntil(() => warm({ ...WRITE, identityProof: billing }), unreadable);
    expect(unreadable()).toBe(true);
    expect(answers.every(served)).toBe(true);
    expect(lines().find((l) => l.message === 'callers parameter unreadable')).toMatchObject({
      level: 'WARN',
      parameter: NAME,
      reason: 'callers_unavailable',
      keeping: 'the last valid value',
    });

    const cold = await inProcess()({ ...WRITE, identityProof: billing });
    expect(cold).toEqual({
      error: 'temporarily_unavailable',
      status: 503,
      error_description:
        'the list of callers cannot be read now (SSM Parameter Store is unavailable); try again shortly',
      retryAfterSeconds: 1,
    });
    const refusals = lines().filter((l) => l.audit === 'refused' && l.reason === 'callers_unavailable');
    expect(refusals).toEqual([expect.objectContaining({ caller: BILLING_SESSION, status: 503 })]);
  });
});

it('logs no proof signature, session credential, client secret or token', () => {
  const logs = lines()
    .map((l) => JSON.stringify(l))
    .join('\n');
  expect(proofs.length).toBeGreaterThan(5);
  for (const proof of proofs) {
    const signature = /Signature=([0-9a-f]{64})/.exec(proof.headers.authorization ?? '')?.[1];
    expect(signature).toBeDefined();
    expect(logs).not.toContain(signature);
  }
  for (const role of ['billing', 'reporting']) {
    const { secretAccessKey, sessionToken } = sts.credentials(role);
    expect(logs).not.toContain(secretAccessKey);
    expect(logs).not.toContain(sessionToken!);
  }
  expect(logs).not.toContain(stack.sandbox.clients[0]!.clientSecret);
  expect(handedOut.length).toBeGreaterThan(5);
  for (const token of handedOut) expect(logs).not.toContain(token);
  expect(logs).toContain(createHash('sha256').update(handedOut[0]!).digest('hex').slice(0, 12));
});
