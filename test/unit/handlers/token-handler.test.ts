import { type IdentityProof, signIdentityProof } from '@limitrail/token-broker-client';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTokenHandler } from '../../../functions/lib/handlers/token-handler';
import type { IdentityVerifier } from '../../../functions/lib/ports';
import { createRuntime, loggerFromEnv } from '../../../functions/lib/runtime';
import { answeringBroker } from '../../support/fakes/answering-broker';
import { roleSession, urlEvent } from '../../support/fakes/url-event';
import { captureLogLines, stopCapturing } from '../../support/log-capture';

/**
 * The token handler's decisions, one request at a time: who the caller is (proof, Function URL identity, or a direct
 * invoke), what it may ask for, and what the broker, the audit line and the invocation's metrics are told. The
 * runtime is the real one (config, caller grants, telemetry writing Powertools log lines and EMF, captured); only the
 * two I/O edges are fakes: STS (the verifier names the role it is set to, verified now or cached) and the broker
 * (it answers a token and keeps what it was asked with).
 */
const NOW = Date.parse('2026-11-29T08:00:00Z');
const AUDIENCE = 'limitrail-token-broker-unit';
const ACCOUNT = '111111111111';
const sessionArn = (role: string) => `arn:aws:sts::${ACCOUNT}:assumed-role/${role}/s1`;
const TOKEN_URL = 'https://auth.example.com/connect/token';
const BASE = {
  TOKEN_TABLE_NAME: 'tokens',
  TOKEN_KMS_KEY_ID: 'alias/broker',
  BROKER_CLIENTS: JSON.stringify({
    limitrail: { secretId: 's', tokenUrl: TOKEN_URL, scopes: ['a', 'b'] },
    reports: { secretId: 's2', tokenUrl: TOKEN_URL, scopes: ['x'] },
  }),
};
/** grants mode: role billing may have scope a of limitrail; role nogrant has no grant at all. */
const GRANTS = {
  ...BASE,
  CALLER_PROOF_AUDIENCE: AUDIENCE,
  BROKER_CALLERS: JSON.stringify([
    { principal: `arn:aws:iam::${ACCOUNT}:role/billing`, client: 'limitrail', scopes: ['a'] },
  ]),
};
/** invoke-permission mode, without a proof audience: proofs cannot be verified. */
const INVOKE_PERMISSION = { ...BASE, CALLER_AUTH: 'invoke-permission' };

type Line = Record<string, unknown>;
let capturing: string[] = [];
afterEach(() => stopCapturing(capturing));

const harness = (env: Record<string, string>, proven: { role: string; source: 'verified' | 'cached' }) => {
  capturing = captureLogLines([]);
  const lines = capturing;
  const { broker, calls } = answeringBroker('unit-token');
  const callers: IdentityVerifier = {
    verify: async () => ({
      identity: { arn: sessionArn(proven.role), accountId: ACCOUNT, principalOrgId: undefined },
      source: proven.source,
    }),
  };
  const handler = createTokenHandler(
    () => ({ ...createRuntime(env, { clock: { nowMs: () => NOW }, callers }), broker }),
    () => loggerFromEnv(env),
  );
  const parsed = () => lines.map((l) => JSON.parse(l) as Line);
  return {
    handler,
    calls,
    /** The invocation's refusal audit line, if any. */
    refusal: () => parsed().find((l) => l.audit === 'refused'),
    /** The invocation's EMF line (its metrics, flushed when it ends). */
    metrics: () => parsed().find((l) => '_aws' in l),
  };
};

const context = { awsRequestId: 'req-1' };

describe('the token handler, grants mode', () => {
  let proof: IdentityProof;
  beforeAll(async () => {
    proof = await signIdentityProof({
      credentials: { accessKeyId: 'ASIAEXAMPLEEXAMPLE01', secretAccessKey: 'secret', sessionToken: 'session' },
      region: 'eu-central-1',
      audience: AUDIENCE,
      stsUrl: 'https://sts.eu-central-1.amazonaws.com/',
      signingDate: new Date(NOW),
    });
  });

  it('refuses a direct invoke without a proof (proof_missing), audited as "direct invoke" with its request id, and counts the identity failure', async () => {
    const { handler, calls, refusal, metrics } = harness(GRANTS, { role: 'billing', source: 'verified' });
    const answer = await handler({ client: 'limitrail', scopes: ['a'] }, context);
    expect(answer).toMatchObject({ error: 'access_denied', status: 403 });
    expect(calls).toEqual([]);
    expect(refusal()).toMatchObject({
      audit: 'refused',
      reason: 'proof_missing',
      caller: 'direct invoke',
      requestId: 'req-1',
    });
    expect(metrics()).toMatchObject({ Refusals: 1, IdentityFailures: 1, 'IdentityFailure.proof_missing': 1 });
  });

  it('tells the broker who a proven caller is (ARN, identity, principal) and that it may hold only its granted scopes', async () => {
    const { handler, calls, metrics } = harness(GRANTS, { role: 'billing', source: 'verified' });
    // No client named: the one client the caller's grants name, although the broker has two.
    const answer = await handler({ scopes: ['a'], identityProof: proof }, context);
    expect(answer).toMatchObject({ access_token: 'unit-token', client: 'limitrail' });
    expect(calls).toHaveLength(1);
    expect(calls[0]!.options).toMatchObject({
      caller: sessionArn('billing'),
      identity: 'verified',
      principal: `role:aws:${ACCOUNT}:billing`,
    });
    expect(calls[0]!.options.allowedScopes).toEqual(new Set(['a']));
    const emf = metrics();
    expect(emf).toMatchObject({ IdentityVerifications: 1 });
    expect(emf).not.toHaveProperty('IdentityCacheHits');
  });

  it('counts an identity the container verified earlier as IdentityCacheHits, and says so to the broker', async () => {
    const { handler, calls, metrics } = harness(GRANTS, { role: 'billing', source: 'cached' });
    await handler({ scopes: ['a'], identityProof: proof }, context);
    expect(calls[0]!.options).toMatchObject({ caller: sessionArn('billing'), identity: 'cached' });
    const emf = metrics();
    expect(emf).toMatchObject({ IdentityCacheHits: 1 });
    expect(emf).not.toHaveProperty('IdentityVerifications');
  });

  it('refuses a proven caller without any grant (caller_not_granted) and names no client to it', async () => {
    const { handler, calls, refusal } = harness(GRANTS, { role: 'nogrant', source: 'verified' });
    const answer = await handler({ scopes: ['a'], identityProof: proof }, context);
    expect(answer).toEqual({
      error: 'access_denied',
      error_description: `caller "${sessionArn('nogrant')}" has no grant`,
      status: 403,
    });
    expect(calls).toEqual([]);
    expect(refusal()).toMatchObject({
      reason: 'caller_not_granted',
      caller: sessionArn('nogrant'),
      identity: 'verified',
    });
  });

  it('audits the client and scopes a caller without a grant asked for by name', async () => {
    const { handler, refusal } = harness(GRANTS, { role: 'nogrant', source: 'verified' });
    const answer = await handler({ client: 'limitrail', scopes: ['a'], identityProof: proof }, context);
    expect(answer).toMatchObject({ error: 'access_denied', status: 403 });
    expect(refusal()).toMatchObject({
      reason: 'caller_not_granted',
      caller: sessionArn('nogrant'),
      client: 'limitrail',
      scopes: ['a'],
    });
  });

  it('refuses a Function URL call whose proof names another principal than AWS verified (proof_caller_mismatch), naming both', async () => {
    const { handler, calls, refusal, metrics } = harness(GRANTS, { role: 'billing', source: 'verified' });
    const other = roleSession('reporting', ACCOUNT);
    const answer = await handler(urlEvent({ scopes: ['a'], identityProof: proof }, { iam: other }), context);
    expect(answer).toMatchObject({ statusCode: 403 });
    expect(calls).toEqual([]);
    expect(refusal()).toMatchObject({
      reason: 'proof_caller_mismatch',
      caller: sessionArn('billing'),
      identity: 'verified',
      urlCaller: other.userArn,
    });
    expect(metrics()).toMatchObject({ IdentityFailures: 1, 'IdentityFailure.proof_caller_mismatch': 1 });
  });
});

describe('the token handler, invoke-permission mode', () => {
  it('serves a direct invoke without a proof every configured scope of the client, audited as "direct invoke"', async () => {
    const { handler, calls } = harness(INVOKE_PERMISSION, { role: 'billing', source: 'verified' });
    const answer = await handler({ client: 'limitrail', scopes: ['a'] }, context);
    expect(answer).toMatchObject({ access_token: 'unit-token' });
    expect(calls).toHaveLength(1);
    const { options } = calls[0]!;
    expect(options.caller).toBe('direct invoke');
    expect(options.identity).toBeUndefined();
    expect(options.principal).toBeUndefined();
    expect(options.allowedScopes).toEqual(new Set(['a', 'b']));
  });

  it('refuses a proof it cannot verify without CALLER_PROOF_AUDIENCE (proof_unverifiable), saying what is missing', async () => {
    const { handler, calls, refusal } = harness(INVOKE_PERMISSION, { role: 'billing', source: 'verified' });
    const answer = await handler({ client: 'limitrail', scopes: ['a'], identityProof: {} }, context);
    expect(answer).toMatchObject({
      error: 'access_denied',
      status: 403,
      error_description: expect.stringContaining('CALLER_PROOF_AUDIENCE'),
    });
    expect(calls).toEqual([]);
    expect(refusal()).toMatchObject({ reason: 'proof_unverifiable', caller: 'direct invoke' });
  });

  it('audits a Function URL call without an AWS-verified caller as "unverified"', async () => {
    const { handler, refusal } = harness(INVOKE_PERMISSION, { role: 'billing', source: 'verified' });
    const answer = await handler(urlEvent({ client: 'limitrail', scopes: ['a'] }), context);
    expect(answer).toMatchObject({ statusCode: 403 });
    expect(refusal()).toMatchObject({ reason: 'caller_unverified', caller: 'unverified' });
  });
});
