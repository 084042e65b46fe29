/**
 * The IAM side of a resolved template (cfn-resolve.ts) as an evaluator needs it: each function role as a caller
 * (its session ARN, the context keys its requests carry, its inline policies and the policies attached to it), the key
 * policies of the token key and of the upstream signing key,
 * the resource-based policy of each function, and the ARNs of what the broker touches.
 *
 * A function's resource-based policy is not in the template as a document: Lambda builds it from the
 * AWS::Lambda::Permission resources. `lambdaPolicyStatement` does that translation the way Lambda's AddPermission
 * documents it (an account id becomes `arn:aws:iam::<id>:root`; FunctionUrlAuthType, InvokedViaFunctionUrl,
 * PrincipalOrgID, SourceArn and SourceAccount become conditions). It is a model: only a deploy shows Lambda's own.
 *
 * Any other KMS key gets AWS's default key policy (the account root allowed kms:*, which hands the decision to
 * IAM): a key of the account that nobody wrote a policy for, and what an `existingTokenKmsKeyArn` key usually has.
 * Under it only the caller's identity policies decide, so the rows on such a key test the role policies' KMS scope.
 */

import type { Json } from '../stacks/packaged-stack';
import type { ResolvedTemplate } from './cfn-resolve';

export interface PolicyDocument {
  Version: string;
  Statement: Json[];
}
export interface NamedPolicy {
  name: string;
  policy: PolicyDocument;
}

/** Whoever makes a request: principal, the request context its credentials carry, its identity policies. */
export interface Caller {
  label: string;
  /** The ARN the request is signed as (an assumed-role session for a role). */
  principal: string;
  principalContext: Record<string, string>;
  identityPolicies: NamedPolicy[];
}

export interface BrokerIam {
  accountId: string;
  region: string;
  stackName: string;
  /** The function roles as callers, by function name (token, prewarm). */
  functionRoles: Record<string, Caller>;
  /**
   * The resource-based policy that applies to a resource ARN, if any: the token key's policy, AWS's default key
   * policy for any other key, a function's policy.
   */
  resourcePolicyFor(resourceArn: string): NamedPolicy | undefined;
  tableName: string;
  tableArn: string;
  keyArn: string;
  /** The upstream signing key the stack creates (stage parameter upstreamSigningKey), if it does. */
  signingKeyArn: string | undefined;
  /** The configured secret's ARN: Secrets Manager appends "-" and 6 random characters to the name. */
  secretArn: string;
  secretId: string;
  functionArn: Record<string, string>;
  logGroupArn: Record<string, string>;
  ruleArn: string;
  /** The SSM parameter the token function reads its callers from (BROKER_CALLERS_PARAMETER), if the stage has one. */
  callersParameter?: { name: string; arn: string };
}

export const SECRET_ARN_SUFFIX = '-AbC123';

/** A caller in another account, or a role of the broker's account that is not one of its own. */
export const callerRole = (accountId: string, roleName: string, identityPolicies: NamedPolicy[] = []): Caller => ({
  label: `${accountId} role/${roleName}`,
  principal: `arn:aws:sts::${accountId}:assumed-role/${roleName}/caller-session`,
  principalContext: {
    'aws:PrincipalArn': `arn:aws:iam::${accountId}:role/${roleName}`,
    'aws:PrincipalAccount': accountId,
  },
  identityPolicies,
});

/**
 * AWS's default key policy (a key created without one): the account root may do kms:*, which lets IAM policies of
 * the account grant the key's use. The key policy then denies nothing: the role policy is the only guard.
 */
export const defaultKeyPolicy = (accountId: string): NamedPolicy => ({
  name: `AWS default key policy (${accountId})`,
  policy: {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'Enable IAM User Permissions',
        Effect: 'Allow',
        Principal: { AWS: `arn:aws:iam::${accountId}:root` },
        Action: 'kms:*',
        Resource: '*',
      },
    ],
  },
});

const asArray = <T>(value: T | T[] | undefined): T[] =>
  value === undefined ? [] : Array.isArray(value) ? value : [value];

/** One AWS::Lambda::Permission as the statement Lambda adds to the function's resource-based policy. */
export const lambdaPolicyStatement = (sid: string, p: Json, functionArn: string): Json => {
  const principal = String(p.Principal);
  const conditions: Record<string, Record<string, string>> = {};
  const add = (operator: string, key: string, value: unknown) => {
    conditions[operator] ??= {};
    conditions[operator][key] = String(value);
  };
  if (p.FunctionUrlAuthType !== undefined) add('StringEquals', 'lambda:FunctionUrlAuthType', p.FunctionUrlAuthType);
  if (p.InvokedViaFunctionUrl !== undefined) add('Bool', 'lambda:InvokedViaFunctionUrl', p.InvokedViaFunctionUrl);
  if (p.PrincipalOrgID !== undefined) add('StringEquals', 'aws:PrincipalOrgID', p.PrincipalOrgID);
  if (p.SourceAccount !== undefined) add('StringEquals', 'AWS:SourceAccount', p.SourceAccount);
  if (p.SourceArn !== undefined) add('ArnLike', 'AWS:SourceArn', p.SourceArn);
  for (const unknown of Object.keys(p).filter(
    (k) =>
      ![
        'FunctionName',
        'Action',
        'Principal',
        'FunctionUrlAuthType',
        'InvokedViaFunctionUrl',
        'PrincipalOrgID',
        'SourceAccount',
        'SourceArn',
      ].includes(k),
  )) {
    throw new Error(
      `AWS::Lambda::Permission ${sid}: property ${unknown} is not modelled in test/support/infra/iam-model.ts`,
    );
  }
  const who = /^\d{12}$/.test(principal)
    ? { AWS: `arn:aws:iam::${principal}:root` }
    : principal === '*'
      ? '*'
      : principal.endsWith('.amazonaws.com')
        ? { Service: principal }
        : { AWS: principal };
  return {
    Sid: sid,
    Effect: 'Allow',
    Principal: who,
    Action: p.Action,
    Resource: functionArn,
    ...(Object.keys(conditions).length > 0 ? { Condition: conditions } : {}),
  };
};

export const brokerIamOf = (resolved: ResolvedTemplate): BrokerIam => {
  const { resources, env } = resolved;
  const { accountId, region, stackName } = env;
  const fnIds: Record<string, string> = { token: 'TokenLambdaFunction', prewarm: 'PrewarmLambdaFunction' };
  const functionArn = Object.fromEntries(Object.entries(fnIds).map(([fn, id]) => [fn, resolved.arn(id)]));
  const functionRoles: Record<string, Caller> = {};
  const logGroupArn: Record<string, string> = {};
  for (const [fn, id] of Object.entries(fnIds)) {
    const props = resources[id]!.Properties;
    const roleArn = String(props.Role);
    const roleId = Object.keys(resources).find(
      (r) => resources[r]!.Type === 'AWS::IAM::Role' && resolved.arn(r) === roleArn,
    );
    if (!roleId) throw new Error(`the role of ${id} (${roleArn}) is not a role of the template`);
    const roleName = resolved.ref(roleId);
    // Its inline policies, and the AWS::IAM::Policy resources attached to it (the upstream signing key's).
    const policies = [
      ...asArray(resources[roleId]!.Properties.Policies as { PolicyName: string; PolicyDocument: PolicyDocument }[]),
      ...Object.values(resources)
        .filter((r) => r.Type === 'AWS::IAM::Policy' && asArray(r.Properties.Roles as string[]).includes(roleName))
        .map((r) => r.Properties as { PolicyName: string; PolicyDocument: PolicyDocument }),
    ];
    functionRoles[fn] = {
      label: `${fn} role`,
      principal: `arn:aws:sts::${accountId}:assumed-role/${roleName}/${String(props.FunctionName)}`,
      principalContext: { 'aws:PrincipalArn': roleArn, 'aws:PrincipalAccount': accountId },
      identityPolicies: policies.map((p) => ({ name: p.PolicyName, policy: p.PolicyDocument })),
    };
    logGroupArn[fn] = `arn:aws:logs:${region}:${accountId}:log-group:/aws/lambda/${String(props.FunctionName)}`;
  }

  const keysOf = (usage: 'ENCRYPT_DECRYPT' | 'SIGN_VERIFY') =>
    Object.keys(resources).filter(
      (r) =>
        resources[r]!.Type === 'AWS::KMS::Key' && (resources[r]!.Properties.KeyUsage ?? 'ENCRYPT_DECRYPT') === usage,
    );
  const [keyId] = keysOf('ENCRYPT_DECRYPT');
  if (!keyId) throw new Error('the template creates no KMS key');
  const keyArn = resolved.arn(keyId);
  const [signingKeyId] = keysOf('SIGN_VERIFY');
  const signingKeyArn = signingKeyId === undefined ? undefined : resolved.arn(signingKeyId);
  const functionPolicies = new Map<string, NamedPolicy>();
  for (const [fn, arn] of Object.entries(functionArn)) {
    const statements = Object.entries(resources)
      .filter(
        ([, r]) => r.Type === 'AWS::Lambda::Permission' && [arn, fnIds[fn]].includes(String(r.Properties.FunctionName)),
      )
      .map(([id, r]) => lambdaPolicyStatement(id, r.Properties, arn));
    if (statements.length > 0)
      functionPolicies.set(arn, {
        name: `${fn} function policy`,
        policy: { Version: '2012-10-17', Statement: statements },
      });
  }
  const resourcePolicyFor = (resourceArn: string): NamedPolicy | undefined => {
    if (resourceArn === keyArn)
      return { name: `${keyId} key policy`, policy: resources[keyId]!.Properties.KeyPolicy as PolicyDocument };
    if (signingKeyId !== undefined && resourceArn === signingKeyArn)
      return {
        name: `${signingKeyId} key policy`,
        policy: resources[signingKeyId]!.Properties.KeyPolicy as PolicyDocument,
      };
    const key = /^arn:aws:kms:[^:]+:(\d{12}):key\//.exec(resourceArn);
    if (key) return defaultKeyPolicy(key[1]!);
    return functionPolicies.get(resourceArn.replace(/:(\$LATEST|\d+)$/, ''));
  };

  const variables = (resources.TokenLambdaFunction!.Properties.Environment as { Variables: Record<string, string> })
    .Variables;
  const secretIds = Object.values(JSON.parse(variables.BROKER_CLIENTS!) as Record<string, { secretId?: string }>)
    .map((c) => c.secretId)
    .filter((id): id is string => id !== undefined);
  if (secretIds.length !== 1) throw new Error(`expected one configured secret, found ${secretIds.length}`);
  const secretId = secretIds[0]!;
  const parameterName = variables.BROKER_CALLERS_PARAMETER ?? '';
  const tableId = Object.keys(resources).find((r) => resources[r]!.Type === 'AWS::DynamoDB::Table')!;
  const ruleId = Object.keys(resources).find((r) => resources[r]!.Type === 'AWS::Events::Rule')!;
  return {
    accountId,
    region,
    stackName,
    functionRoles,
    resourcePolicyFor,
    tableName: resolved.ref(tableId),
    tableArn: resolved.arn(tableId),
    keyArn,
    signingKeyArn,
    secretId,
    secretArn: secretId.startsWith('arn:')
      ? secretId
      : `arn:aws:secretsmanager:${region}:${accountId}:secret:${secretId}${SECRET_ARN_SUFFIX}`,
    functionArn,
    logGroupArn,
    ruleArn: resolved.arn(ruleId),
    ...(parameterName === ''
      ? {}
      : {
          callersParameter: {
            name: parameterName,
            arn: `arn:aws:ssm:${region}:${accountId}:parameter/${parameterName.replace(/^\//, '')}`,
          },
        }),
  };
};
