/**
 * The IAM policies of the packaged template (`osls package --stage ci`, intrinsics resolved for a sample account
 * and region), evaluated by a real IAM policy evaluator (@cloud-copilot/iam-simulate; AGPL-3.0, tests only) rather
 * than pattern-matched: the function roles' policies, the token key's key policy and the token function's resource
 * policy, row by row (test/support/infra/iam-table.ts). The allowed rows of each function role are the AWS calls its own
 * function's code made against moto, the token function in real token requests and the prewarm function in real
 * prewarm runs (test/support/infra/code-calls.ts), so a call the code starts making without a permission fails here, not
 * in production. The KMS rows run twice: under the template's key policy, and under AWS's default key policy (a
 * stage with `existingTokenKmsKeyArn`, and any other key), where only the role policy can deny.
 *
 * What the evaluator does not express, asserted otherwise:
 *   - Lambda builds a function's resource policy from AWS::Lambda::Permission resources: iam-model.ts translates
 *     them (a model of Lambda's AddPermission), and package.test.ts checks the permissions themselves.
 *   - A Function URL call needs both lambda:InvokeFunctionUrl and lambda:InvokeFunction: two rows per grantee.
 *   - aws:PrincipalArn and aws:PrincipalAccount are not derived from the principal by the evaluator: each caller
 *     carries them in its request context (iam-model.ts).
 *   - kms:EncryptionContext:<key> context keys: see the workaround in iam-table.ts, and the rows below that prove
 *     it still denies.
 */

import { createValidatedPolicy, validateResourcePolicy } from '@cloud-copilot/iam-policy';
import { runSimulation } from '@cloud-copilot/iam-simulate';
import { describe, expect, it } from 'vitest';

import { encryptionContextFor } from '../../functions/lib/cache/table/token-cipher';
import { resolveTemplate } from '../support/infra/cfn-resolve';
import { recordCodeCalls } from '../support/infra/code-calls';
import { brokerIamOf } from '../support/infra/iam-model';
import {
  brokerRows,
  evaluateRow,
  evaluateTable,
  failures,
  kmsContext,
  type RowResult,
} from '../support/infra/iam-table';
import { packageStage } from '../support/stacks/packaged-stack';

const SAMPLE = { accountId: '111111111111', region: 'eu-west-1', stackName: 'limitrail-token-broker-ci' };

// Packaged, resolved and recorded once, before the rows are collected: each row is its own test. The ci stage with
// its callers in an SSM parameter the stack creates (callersParameter create): the token role's GetParameter on it.
const packaged = await packageStage('ci', { callersParameter: 'create' });
const resolved = resolveTemplate(packaged.template, SAMPLE);
await packaged.remove();
const iam = brokerIamOf(resolved);
const calls = await recordCodeCalls(iam);
const rows = brokerRows(iam, calls);
const results = new Map<string, Promise<RowResult>>();
const evaluated = (name: string) =>
  results.get(name) ?? results.set(name, evaluateRow(iam, rows.find((r) => r.name === name)!)).get(name)!;

const described = (fn: string) => calls[fn]!.map((c) => c.what).sort();
const KMS_CALLS = ['Decrypt', 'GenerateDataKey'].map((c) => `${c} on the token key with the code's encryption context`);
const SECRET_CALLS = ['AWSCURRENT', 'AWSPREVIOUS'].map((stage) => `GetSecretValue of the configured secret, ${stage}`);
/** The private_key_jwt client's: the signing key's public half, and a signature (ES256: the ci stage's key is P-256). */
const SIGNING_CALLS = [
  'GetPublicKey of the upstream signing key',
  'Sign with the upstream signing key (ECDSA_SHA_256, RAW)',
];

describe('the AWS calls each function makes', () => {
  it('token: GetItem and UpdateItem on the table, GetSecretValue (AWSCURRENT and AWSPREVIOUS), GenerateDataKey and Decrypt, GetParameter of the callers parameter, GetPublicKey and Sign', () => {
    expect(described('token')).toEqual([
      ...KMS_CALLS,
      'GetItem on the token table',
      'GetParameter of the callers parameter',
      SIGNING_CALLS[0],
      ...SECRET_CALLS,
      SIGNING_CALLS[1],
      'UpdateItem on the token table',
      'UpdateItem on the token table (ReturnValues ALL_NEW)',
    ]);
  });

  it('prewarm: a consistent GetItem, UpdateItem, GetSecretValue (AWSCURRENT and AWSPREVIOUS), GenerateDataKey and Decrypt, GetPublicKey and Sign', () => {
    expect(described('prewarm')).toEqual([
      ...KMS_CALLS,
      'GetItem on the token table (consistent read)',
      SIGNING_CALLS[0],
      ...SECRET_CALLS,
      SIGNING_CALLS[1],
      'UpdateItem on the token table',
      'UpdateItem on the token table (ReturnValues ALL_NEW)',
    ]);
  });

  it("carry the broker's encryption context naming the stage's table on every call with the token key", () => {
    for (const call of Object.values(calls)
      .flat()
      .filter((c) => c.resource === iam.keyArn)) {
      expect(call.context).toEqual(kmsContext(encryptionContextFor(iam.tableName)));
    }
  });

  it("are the allowed rows of that function's role, and only of it", () => {
    for (const [fn, own] of Object.entries(calls)) {
      const allowed = rows.filter(
        (r) => r.name.startsWith(`${fn} role: `) && r.expect === 'Allowed' && !r.action.startsWith('logs:'),
      );
      expect(allowed.map((r) => `${r.action} ${JSON.stringify(r.context ?? {})}`).sort()).toEqual(
        own.map((c) => `${c.action} ${JSON.stringify(c.context)}`).sort(),
      );
    }
  });
});

describe('IAM evaluation of the packaged template (ci stage, callersParameter create, account 111111111111, eu-west-1)', () => {
  it('reads the callers parameter the stack creates, and only the token function does', () => {
    expect(iam.callersParameter).toEqual({
      name: '/limitrail-token-broker/ci/callers',
      arn: 'arn:aws:ssm:eu-west-1:111111111111:parameter/limitrail-token-broker/ci/callers',
    });
    expect(rows.filter((r) => r.action.startsWith('ssm:')).map((r) => `${r.name} -> ${r.expect}`)).toEqual([
      'token role: GetParameter of the callers parameter -> Allowed',
      "token role: GetParameter of another stage's callers parameter -> Denied",
      'token role: GetParameter of a parameter named like it plus a suffix -> Denied',
      'token role: GetParameter of another parameter -> Denied',
      'token role: GetParametersByPath under its path -> Denied',
      'token role: PutParameter on the callers parameter -> Denied',
      'prewarm role: GetParameter of the callers parameter -> Denied',
      "prewarm role: GetParameter of another stage's callers parameter -> Denied",
      'prewarm role: GetParameter of a parameter named like it plus a suffix -> Denied',
      'prewarm role: GetParameter of another parameter -> Denied',
      'prewarm role: GetParametersByPath under its path -> Denied',
      'prewarm role: PutParameter on the callers parameter -> Denied',
    ]);
  });

  it('has a row for each name once', () => {
    expect(new Set(rows.map((r) => r.name)).size).toBe(rows.length);
  });

  it.for(rows.map((r) => [r.name, r.expect] as const))('%s -> %s', async ([name, expected]) => {
    const result = await evaluated(name);
    expect(result.decision, result.detail).toBe(expected);
  });

  it('holds as a whole table (what a broken policy fails: test/infra/iam-table.test.ts)', async () => {
    expect(failures(await evaluateTable(iam, rows))).toEqual([]);
  });
});

describe('the encryption-context workaround', () => {
  const byEvaluator = async (evaluator: RowResult['evaluator']) =>
    (await Promise.all(rows.map((r) => evaluated(r.name)))).filter((r) => r.evaluator === evaluator);

  it('evaluates every row with an encryption context raw, and denies there what must be denied', async () => {
    const raw = await byEvaluator('runUnsafeSimulation');
    expect(raw.length).toBeGreaterThan(0);
    for (const r of raw)
      expect(Object.keys(r.row.context ?? {}).some((k) => k.startsWith('kms:EncryptionContext:'))).toBe(true);
    const deniedRaw = raw.filter((r) => r.row.expect === 'Denied').map((r) => r.row.name);
    expect(deniedRaw).toEqual(
      expect.arrayContaining([
        "token role: Decrypt with another stage's table in the context",
        'token role: Decrypt with another purpose',
        "token role: Decrypt with the code's context plus an extra key",
        "prewarm role, existing key (AWS's default key policy): GenerateDataKey with the code's context plus an extra key",
      ]),
    );
    for (const name of deniedRaw) expect((await evaluated(name)).decision).toBe('Denied');
    expect(raw.filter((r) => r.row.expect === 'Allowed').length).toBeGreaterThan(0);
  });

  it('is still needed: runSimulation alone drops kms:EncryptionContext keys and denies the real Decrypt', async () => {
    const decrypt = rows.find((r) => r.name.startsWith('token role: Decrypt on the token key'))!;
    const policy = iam.resourcePolicyFor(decrypt.resource)!;
    const result = await runSimulation(
      {
        request: {
          principal: decrypt.caller.principal,
          action: decrypt.action,
          resource: { resource: decrypt.resource, accountId: iam.accountId },
          contextVariables: { ...decrypt.caller.principalContext, ...decrypt.context },
        },
        identityPolicies: decrypt.caller.identityPolicies,
        serviceControlPolicies: [],
        resourceControlPolicies: [],
        resourcePolicy: createValidatedPolicy(policy.policy, validateResourcePolicy, { name: policy.name }),
      },
      {},
    );
    // When this fails, the evaluator has learnt encryption contexts: evaluate these rows with runSimulation alone.
    expect(result.resultType === 'single' && result.result.ignoredContextKeys).toEqual(
      Object.keys(encryptionContextFor(iam.tableName)).map((k) => `kms:EncryptionContext:${k}`),
    );
    expect(result.resultType === 'single' && result.overallResult).toBe('ImplicitlyDenied');
  });
});
