/**
 * The broker's IAM evaluation table: each row a caller, an action, a resource ARN, the request context the real
 * call carries and the decision expected, evaluated by @cloud-copilot/iam-simulate (AGPL-3.0: a devDependency of
 * the tests, never bundled) against the policies of a resolved template (iam-model.ts).
 *
 * Evaluator limit, worked around here: in 0.1.173 `runSimulation` drops context keys of the form
 * `kms:EncryptionContext:<key>` while validating the request (it reports them in `ignoredContextKeys`), so every
 * encryption-context condition would look unmet. Rows whose context has such keys are still run through
 * `runSimulation` (it validates the action, the resource ARN against the action's resource types, the policies and
 * every other context key), and their decision is then taken from `runUnsafeSimulation` with the raw context.
 * `runUnsafeSimulation` fails on a resource policy without a name, so the resource policy is passed as a
 * validated, named policy (`createValidatedPolicy`, which also runs iam-policy's resource-policy validation). A row
 * whose context loses any other key is an error, never a silent pass.
 */
import { createValidatedPolicy, validateResourcePolicy } from '@cloud-copilot/iam-policy';
import { runSimulation, runUnsafeSimulation, type Simulation } from '@cloud-copilot/iam-simulate';

import { encryptionContextFor } from '../../../functions/lib/cache/table/token-cipher';
import { type BrokerIam, type Caller, callerRole, defaultKeyPolicy, type NamedPolicy } from './iam-model';
import { signingOtherRows, signingRoleRows } from './iam-signing-rows';

export type Decision = 'Allowed' | 'Denied';
export type Context = Record<string, string | string[]>;

export interface IamRow {
  name: string;
  caller: Caller;
  action: string;
  resource: string;
  context?: Context;
  expect: Decision;
  /** The resource policy to evaluate with instead of the template's (`BrokerIam.resourcePolicyFor`). */
  resourcePolicy?: NamedPolicy;
}

/** One AWS call a function's code makes (recorded from the SDK commands it sends), as IAM sees it. */
export interface CodeCall {
  what: string;
  action: string;
  resource: string;
  context: Context;
}

export interface RowResult {
  row: IamRow;
  decision: Decision | 'invalid';
  /** runUnsafeSimulation: the row's encryption context was evaluated raw (see the module comment). */
  evaluator: 'runSimulation' | 'runUnsafeSimulation';
  detail?: string;
}

/** The request context of a KMS call with this encryption context. */
export const kmsContext = (encryptionContext: Record<string, string>): Context => ({
  ...Object.fromEntries(Object.entries(encryptionContext).map(([k, v]) => [`kms:EncryptionContext:${k}`, v])),
  'kms:EncryptionContextKeys': Object.keys(encryptionContext),
});

const isEncryptionContextKey = (key: string) => /^kms:encryptioncontext:/i.test(key);

export const evaluateRow = async (iam: BrokerIam, row: IamRow): Promise<RowResult> => {
  const resourcePolicy = row.resourcePolicy ?? iam.resourcePolicyFor(row.resource);
  const validated =
    resourcePolicy &&
    createValidatedPolicy(resourcePolicy.policy, validateResourcePolicy, { name: resourcePolicy.name });
  if (validated && validated.errors.length > 0) {
    return {
      row,
      decision: 'invalid',
      evaluator: 'runSimulation',
      detail: `${resourcePolicy!.name}: ${JSON.stringify(validated.errors)}`,
    };
  }
  const simulation: Simulation = {
    request: {
      principal: row.caller.principal,
      action: row.action,
      resource: { resource: row.resource, accountId: row.resource.split(':')[4] || iam.accountId },
      contextVariables: { ...row.caller.principalContext, ...row.context },
    },
    identityPolicies: row.caller.identityPolicies,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: validated,
  };
  const checked = await runSimulation(simulation, {});
  if (checked.resultType !== 'single') {
    const detail =
      checked.resultType === 'error' ? JSON.stringify(checked.errors) : 'a wildcard resource: rows name one resource';
    return { row, decision: 'invalid', evaluator: 'runSimulation', detail };
  }
  const ignored = checked.result.ignoredContextKeys ?? [];
  const lost = ignored.filter((key) => !isEncryptionContextKey(key));
  if (lost.length > 0)
    return {
      row,
      decision: 'invalid',
      evaluator: 'runSimulation',
      detail: `context keys not evaluated: ${lost.join(', ')}`,
    };
  if (ignored.length === 0)
    return { row, decision: checked.overallResult === 'Allowed' ? 'Allowed' : 'Denied', evaluator: 'runSimulation' };
  const raw = runUnsafeSimulation(simulation, {});
  return { row, decision: raw === 'Allowed' ? 'Allowed' : 'Denied', evaluator: 'runUnsafeSimulation' };
};

export const evaluateTable = (iam: BrokerIam, rows: IamRow[]): Promise<RowResult[]> =>
  Promise.all(rows.map((row) => evaluateRow(iam, row)));

/** The rows whose decision is not the expected one, one line each (empty when the table holds). */
export const failures = (results: RowResult[]): string[] =>
  results
    .filter((r) => r.decision !== r.row.expect)
    .map((r) => `${r.row.name}: expected ${r.row.expect}, got ${r.decision}${r.detail ? ` (${r.detail})` : ''}`);

/** docs/deploy.md "Add a caller": the identity policy of a caller that invokes directly. */
export const directCallerPolicy = (functionArn: string): NamedPolicy => ({
  name: 'InvokeLimitrailTokenBroker',
  policy: {
    Version: '2012-10-17',
    Statement: [
      { Sid: 'InvokeLimitrailTokenBroker', Effect: 'Allow', Action: 'lambda:InvokeFunction', Resource: functionArn },
    ],
  },
});

/** docs/deploy.md "Add a caller": the identity policy of a caller that may use only the Function URL. */
export const urlOnlyCallerPolicy = (functionArn: string): NamedPolicy => ({
  name: 'CallLimitrailTokenBrokerUrl',
  policy: {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'CallLimitrailTokenBrokerUrl',
        Effect: 'Allow',
        Action: 'lambda:InvokeFunctionUrl',
        Resource: functionArn,
        Condition: { StringEquals: { 'lambda:FunctionUrlAuthType': 'AWS_IAM' } },
      },
      {
        Sid: 'InvokeLimitrailTokenBrokerViaUrlOnly',
        Effect: 'Allow',
        Action: 'lambda:InvokeFunction',
        Resource: functionArn,
        Condition: { Bool: { 'lambda:InvokedViaFunctionUrl': 'true' } },
      },
    ],
  },
});

/** An identity policy allowing every action of the given services on every resource (a broad role). */
export const broadPolicy = (...services: string[]): NamedPolicy => ({
  name: `broad-${services.join('-')}`,
  policy: {
    Version: '2012-10-17',
    Statement: [{ Effect: 'Allow', Action: services.map((s) => `${s}:*`), Resource: '*' }],
  },
});

const URL_CALL: Context = { 'lambda:FunctionUrlAuthType': 'AWS_IAM' };
const VIA_URL: Context = { 'lambda:InvokedViaFunctionUrl': 'true' };
const DIRECT: Context = { 'lambda:InvokedViaFunctionUrl': 'false' };

/**
 * The rows on the callers parameter (BROKER_CALLERS_PARAMETER): the token function reads that one parameter (its
 * allowed row is its recorded GetParameter), and nothing else of SSM: not another stage's parameter, not one named
 * like it plus a suffix, not the parameters under its path; it may not change it. The prewarm function does not read
 * it. A stage without the parameter: the token function may not read the one the stage would have either.
 */
const callersParameterRows = (
  iam: BrokerIam,
  fn: string,
  row: (name: string, action: string, resource: string, expect: Decision) => void,
): void => {
  const stage = iam.stackName.split('-').pop()!;
  const arn =
    iam.callersParameter?.arn ??
    `arn:aws:ssm:${iam.region}:${iam.accountId}:parameter/${iam.stackName.replace(/-[^-]+$/, '')}/${stage}/callers`;
  if (fn !== 'token' || !iam.callersParameter)
    row('GetParameter of the callers parameter', 'ssm:GetParameter', arn, 'Denied');
  const otherStage = arn.replace(`/${stage}/`, '/prod/');
  if (otherStage !== arn)
    row("GetParameter of another stage's callers parameter", 'ssm:GetParameter', otherStage, 'Denied');
  row('GetParameter of a parameter named like it plus a suffix', 'ssm:GetParameter', `${arn}-backup`, 'Denied');
  row(
    'GetParameter of another parameter',
    'ssm:GetParameter',
    arn.replace(/:parameter\/.*$/, ':parameter/platform/db-password'),
    'Denied',
  );
  row('GetParametersByPath under its path', 'ssm:GetParametersByPath', arn.replace(/\/[^/]+$/, ''), 'Denied');
  row('PutParameter on the callers parameter', 'ssm:PutParameter', arn, 'Denied');
};

/** Each function's AWS calls, by function name (token, prewarm): what its own code sent (code-calls.ts). */
export type CallsByFunction = Record<string, CodeCall[]>;

/** How the rows of a role on the token key read when the key policy is AWS's default one. */
export const EXISTING_KEY = "existing key (AWS's default key policy)";

/**
 * The table: every call in `calls[fn]` allowed for the role of function fn, and what must stay denied; the KMS rows
 * again with the token key under AWS's default key policy (a stage's `existingTokenKmsKeyArn`), where nothing but
 * the role policy can deny; then who may invoke the token function and how (the ci stage's invokePrincipals and
 * brokerCallers, serverless.yml).
 */
export const brokerRows = (iam: BrokerIam, calls: CallsByFunction): IamRow[] => {
  const { accountId, region, tableName, keyArn } = iam;
  const otherStack = iam.stackName.replace(/-[^-]+$/, '-prod');
  const otherTable = tableName.replace(iam.stackName, otherStack);
  const otherTableArn = iam.tableArn.replace(tableName, otherTable);
  const secretBase = iam.secretArn.slice(0, iam.secretArn.lastIndexOf('-'));
  const suffix = iam.secretArn.slice(iam.secretArn.lastIndexOf('-'));
  // A key of the account with no policy written for it: AWS's default key policy (iam-model.ts resourcePolicyFor).
  const otherKeyArn = `arn:aws:kms:${region}:${accountId}:key/3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f`;
  const ownContext = kmsContext(encryptionContextFor(tableName));
  const extraKeyContext = kmsContext({ ...encryptionContextFor(tableName), reason: 'caller-chosen' });
  const defaultPolicy = defaultKeyPolicy(accountId);
  const rows: IamRow[] = [];
  for (const [fn, role] of Object.entries(iam.functionRoles)) {
    const own = calls[fn];
    if (!own || own.length === 0)
      throw new Error(`no recorded AWS calls of the ${fn} function: its role's allowed rows come from them`);
    const row = (name: string, action: string, resource: string, expect: Decision, context?: Context) =>
      rows.push({
        name: `${fn} role: ${name}`,
        caller: role,
        action,
        resource,
        expect,
        ...(context ? { context } : {}),
      });
    for (const call of own) row(call.what, call.action, call.resource, 'Allowed', call.context);
    const stream = `${iam.logGroupArn[fn]}:log-stream:2026/01/01/[$LATEST]0123456789abcdef`;
    row('Lambda writes its logs (CreateLogStream)', 'logs:CreateLogStream', stream, 'Allowed');
    row('Lambda writes its logs (PutLogEvents)', 'logs:PutLogEvents', stream, 'Allowed');
    const otherFn = fn === 'token' ? 'prewarm' : 'token';
    row(
      `PutLogEvents into the ${otherFn} function's log group`,
      'logs:PutLogEvents',
      `${iam.logGroupArn[otherFn]}:log-stream:x`,
      'Denied',
    );
    for (const action of ['Scan', 'Query', 'PutItem', 'DeleteItem', 'DeleteTable']) {
      row(`dynamodb:${action} on the token table`, `dynamodb:${action}`, iam.tableArn, 'Denied');
    }
    row("GetItem on another stage's table", 'dynamodb:GetItem', otherTableArn, 'Denied');
    row("UpdateItem on another stage's table", 'dynamodb:UpdateItem', otherTableArn, 'Denied');
    row(
      'GetSecretValue of another secret',
      'secretsmanager:GetSecretValue',
      `${secretBase.replace(/[^/]+$/, 'other-client')}${suffix}`,
      'Denied',
    );
    row(
      "GetSecretValue of another stage's secret",
      'secretsmanager:GetSecretValue',
      `${secretBase.replace(`/${iam.stackName.split('-').pop()}/`, '/prod/')}${suffix}`,
      'Denied',
    );
    row(
      'GetSecretValue of a secret named like it plus a suffix',
      'secretsmanager:GetSecretValue',
      `${secretBase}-backup${suffix}`,
      'Denied',
    );
    // On the token key under its own key policy, and again under AWS's default key policy (an existing key), where
    // only the role policy stands between the role and the key.
    const keyRows = (label: string, resourcePolicy?: NamedPolicy) => {
      const keyRow = (name: string, action: string, expect: Decision, context?: Context) =>
        rows.push({
          name: `${fn} role${label}: ${name}`,
          caller: role,
          action,
          resource: keyArn,
          expect,
          ...(context ? { context } : {}),
          ...(resourcePolicy ? { resourcePolicy } : {}),
        });
      if (resourcePolicy)
        for (const call of own.filter((c) => c.resource === keyArn))
          keyRow(call.what, call.action, 'Allowed', call.context);
      keyRow('Decrypt without an encryption context', 'kms:Decrypt', 'Denied', { 'kms:EncryptionContextKeys': [] });
      keyRow(
        'Decrypt with another purpose',
        'kms:Decrypt',
        'Denied',
        kmsContext({ ...encryptionContextFor(tableName), purpose: 'another-application' }),
      );
      keyRow(
        "Decrypt with another stage's table in the context",
        'kms:Decrypt',
        'Denied',
        kmsContext(encryptionContextFor(otherTable)),
      );
      keyRow(
        "GenerateDataKey with another stage's table in the context",
        'kms:GenerateDataKey',
        'Denied',
        kmsContext(encryptionContextFor(otherTable)),
      );
      // The code's exact context plus one key of the caller's choosing: a different context to KMS, refused by
      // ForAllValues:StringEquals on kms:EncryptionContextKeys.
      for (const action of ['GenerateDataKey', 'Decrypt'])
        keyRow(`${action} with the code's context plus an extra key`, `kms:${action}`, 'Denied', extraKeyContext);
      keyRow("Encrypt with the broker's context", 'kms:Encrypt', 'Denied', ownContext);
      keyRow('CreateGrant on the token key', 'kms:CreateGrant', 'Denied');
      keyRow('PutKeyPolicy on the token key', 'kms:PutKeyPolicy', 'Denied');
      keyRow('ScheduleKeyDeletion of the token key', 'kms:ScheduleKeyDeletion', 'Denied');
    };
    keyRows('');
    keyRows(`, ${EXISTING_KEY}`, defaultPolicy);
    rows.push(...signingRoleRows(iam, fn, role, own));
    row(
      "Decrypt on another key (AWS's default key policy), with the broker's context",
      'kms:Decrypt',
      otherKeyArn,
      'Denied',
      ownContext,
    );
    row(
      "GenerateDataKey on another key (AWS's default key policy), with the broker's context",
      'kms:GenerateDataKey',
      otherKeyArn,
      'Denied',
      ownContext,
    );
    callersParameterRows(iam, fn, row);
    row('invokes the token function', 'lambda:InvokeFunction', iam.functionArn.token!, 'Denied', DIRECT);
    row("calls the token function's URL", 'lambda:InvokeFunctionUrl', iam.functionArn.token!, 'Denied', URL_CALL);
    row('invokes the prewarm function', 'lambda:InvokeFunction', iam.functionArn.prewarm!, 'Denied', DIRECT);
  }

  const token = iam.functionArn.token!;
  const caller = (label: string, c: Caller, action: string, expect: Decision, context: Context, resource = token) =>
    rows.push({ name: `${label}: ${action} ${JSON.stringify(context)}`, caller: c, action, resource, context, expect });
  const billing = callerRole(accountId, 'billing-service', [directCallerPolicy(token)]);
  caller('invokePrincipals role, direct policy', billing, 'lambda:InvokeFunction', 'Allowed', DIRECT);
  // docs/deploy.md "Add a caller": within the function's account, either policy alone lets a role invoke directly;
  // from another account, only both together.
  const billingWithoutPolicy = callerRole(accountId, 'billing-service');
  caller('invokePrincipals role, no identity policy', billingWithoutPolicy, 'lambda:InvokeFunction', 'Allowed', DIRECT);
  caller(
    'role of the account not in invokePrincipals, direct policy',
    callerRole(accountId, 'ops-tool', [directCallerPolicy(token)]),
    'lambda:InvokeFunction',
    'Allowed',
    DIRECT,
  );
  caller(
    'invokePrincipals role of the granted account 333333333333, no identity policy',
    callerRole('333333333333', 'usage-exporter'),
    'lambda:InvokeFunction',
    'Denied',
    DIRECT,
  );
  caller(
    'invokePrincipals role of the granted account 333333333333, direct policy',
    callerRole('333333333333', 'usage-exporter', [directCallerPolicy(token)]),
    'lambda:InvokeFunction',
    'Allowed',
    DIRECT,
  );
  const grantee = callerRole('333333333333', 'reporting-caller', [urlOnlyCallerPolicy(token)]);
  caller('URL grantee in another account, URL-only policy', grantee, 'lambda:InvokeFunctionUrl', 'Allowed', URL_CALL);
  caller('URL grantee in another account, URL-only policy', grantee, 'lambda:InvokeFunction', 'Allowed', VIA_URL);
  caller('URL grantee in another account, URL-only policy', grantee, 'lambda:InvokeFunction', 'Denied', DIRECT);
  const broadGrantee = callerRole('333333333333', 'lambda-admin', [broadPolicy('lambda')]);
  caller('URL grantee in another account, lambda:* on *', broadGrantee, 'lambda:InvokeFunction', 'Denied', DIRECT);
  caller('URL grantee in another account, lambda:* on *', broadGrantee, 'lambda:InvokeFunctionUrl', 'Denied', {
    'lambda:FunctionUrlAuthType': 'NONE',
  });
  const reporting = callerRole(accountId, 'reporting');
  caller(
    'URL grantee role of the account, no identity policy',
    reporting,
    'lambda:InvokeFunctionUrl',
    'Allowed',
    URL_CALL,
  );
  caller('URL grantee role of the account, no identity policy', reporting, 'lambda:InvokeFunction', 'Allowed', VIA_URL);
  caller('URL grantee role of the account, no identity policy', reporting, 'lambda:InvokeFunction', 'Denied', DIRECT);
  const stranger = callerRole('444444444444', 'lambda-admin', [broadPolicy('lambda')]);
  caller(
    'principal not configured (another account, lambda:* on *)',
    stranger,
    'lambda:InvokeFunction',
    'Denied',
    DIRECT,
  );
  caller(
    'principal not configured (another account, lambda:* on *)',
    stranger,
    'lambda:InvokeFunctionUrl',
    'Denied',
    URL_CALL,
  );
  caller(
    'principal not configured (another account, lambda:* on *)',
    stranger,
    'lambda:InvokeFunction',
    'Denied',
    VIA_URL,
  );
  caller(
    'role of the account without a grant or identity policy',
    callerRole(accountId, 'someone'),
    'lambda:InvokeFunction',
    'Denied',
    DIRECT,
  );

  const signAlgorithm = Object.values(calls)
    .flat()
    .find((c) => c.action === 'kms:Sign')?.context['kms:SigningAlgorithm'];
  if (signAlgorithm !== undefined) rows.push(...signingOtherRows(iam, String(signAlgorithm)));
  const admin = callerRole(accountId, 'account-admin', [broadPolicy('kms', 'dynamodb')]);
  rows.push(
    {
      name: "account admin (kms:*, dynamodb:* on *): Decrypt with the broker's context",
      caller: admin,
      action: 'kms:Decrypt',
      resource: keyArn,
      context: ownContext,
      expect: 'Denied',
    },
    {
      name: "account admin (kms:*, dynamodb:* on *): GenerateDataKey with the broker's context",
      caller: admin,
      action: 'kms:GenerateDataKey',
      resource: keyArn,
      context: ownContext,
      expect: 'Denied',
    },
    {
      name: 'account admin (kms:*, dynamodb:* on *): GetItem on the token table (ciphertext only)',
      caller: admin,
      action: 'dynamodb:GetItem',
      resource: iam.tableArn,
      expect: 'Allowed',
    },
  );
  return rows;
};
