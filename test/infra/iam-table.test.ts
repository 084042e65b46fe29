/**
 * The IAM evaluation table (test/support/infra/iam-table.ts) can fail: a template of the broker's shape, written out here
 * with CloudFormation intrinsics (so the resolver runs too), holds the whole table; each deliberately broken copy
 * fails exactly the rows its break concerns. test/infra/iam-evaluation.test.ts runs the same table against
 * the template `osls package` produces.
 */
import { describe, expect, it } from 'vitest';

import { encryptionContextFor } from '../../functions/lib/cache/table/token-cipher';
import { resolveTemplate } from '../support/infra/cfn-resolve';
import { brokerIamOf } from '../support/infra/iam-model';
import { EXISTING_SIGNING_KEY } from '../support/infra/iam-signing-rows';
import {
  brokerRows,
  type CallsByFunction,
  type CodeCall,
  EXISTING_KEY,
  evaluateTable,
  failures,
  kmsContext,
} from '../support/infra/iam-table';
import type { CfnTemplate, Json } from '../support/stacks/packaged-stack';

const SAMPLE = { accountId: '111111111111', region: 'eu-west-1', stackName: 'limitrail-token-broker-ci' };
const SECRET = 'limitrail-token-broker/ci/limitrail';
const PARAMETER = '/limitrail-token-broker/ci/callers';
const sub = (text: string) => ({ 'Fn::Sub': text });
const roleArn = (fn: string) =>
  sub(`arn:\${AWS::Partition}:iam::\${AWS::AccountId}:role/limitrail-token-broker-ci-eu-west-1-${fn}`);
const contextCondition = () => ({
  'kms:EncryptionContext:purpose': 'limitrail-token-broker/token-cache',
  'kms:EncryptionContext:tokenTable': { Ref: 'TokenTable' },
});
const contextKeysCondition = () => ({ 'kms:EncryptionContextKeys': ['purpose', 'tokenTable'] });
const SIGNING_CONDITION = () => ({ 'kms:SigningAlgorithm': 'ECDSA_SHA_256', 'kms:MessageType': 'RAW' });

const role = (fn: string) => ({
  Type: 'AWS::IAM::Role',
  Properties: {
    RoleName: `limitrail-token-broker-ci-eu-west-1-${fn}`,
    Policies: [
      {
        PolicyName: `${fn}-function`,
        PolicyDocument: {
          Version: '2012-10-17',
          Statement: [
            {
              Effect: 'Allow',
              Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
              Resource: sub(
                `arn:\${AWS::Partition}:logs:\${AWS::Region}:\${AWS::AccountId}:log-group:/aws/lambda/limitrail-token-broker-ci-${fn}:*`,
              ),
            },
            {
              Sid: 'TokenCacheTable',
              Effect: 'Allow',
              Action: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
              Resource: { 'Fn::GetAtt': ['TokenTable', 'Arn'] },
            },
            {
              Effect: 'Allow',
              Action: 'secretsmanager:GetSecretValue',
              Resource: sub(
                `arn:\${AWS::Partition}:secretsmanager:\${AWS::Region}:\${AWS::AccountId}:secret:${SECRET}-??????`,
              ),
            },
            {
              Sid: 'TokenEnvelopeKey',
              Effect: 'Allow',
              Action: ['kms:GenerateDataKey', 'kms:Decrypt'],
              Resource: { 'Fn::GetAtt': ['TokenKmsKey', 'Arn'] },
              Condition: { StringEquals: contextCondition(), 'ForAllValues:StringEquals': contextKeysCondition() },
            },
            ...(fn === 'token'
              ? [
                  {
                    Sid: 'CallersParameter',
                    Effect: 'Allow',
                    Action: 'ssm:GetParameter',
                    Resource: sub(
                      `arn:\${AWS::Partition}:ssm:\${AWS::Region}:\${AWS::AccountId}:parameter${PARAMETER}`,
                    ),
                  },
                ]
              : []),
          ],
        },
      },
    ],
  },
});

const fn = (name: string) => ({
  Type: 'AWS::Lambda::Function',
  Properties: {
    FunctionName: `limitrail-token-broker-ci-${name}`,
    Role: { 'Fn::GetAtt': [`${name === 'token' ? 'Token' : 'Prewarm'}FunctionRole`, 'Arn'] },
    Environment: {
      Variables: {
        BROKER_CLIENTS: JSON.stringify({ limitrail: { secretId: SECRET } }),
        BROKER_CALLERS_PARAMETER: PARAMETER,
      },
    },
  },
});

const permission = (properties: Json) => ({
  Type: 'AWS::Lambda::Permission',
  Properties: { FunctionName: { 'Fn::GetAtt': ['TokenLambdaFunction', 'Arn'] }, ...properties },
});

const fixture = (): CfnTemplate =>
  ({
    Resources: {
      TokenTable: { Type: 'AWS::DynamoDB::Table', Properties: {} },
      TokenKmsKey: {
        Type: 'AWS::KMS::Key',
        Properties: {
          KeyPolicy: {
            Version: '2012-10-17',
            Statement: [
              {
                Sid: 'BrokerFunctionsUseKey',
                Effect: 'Allow',
                Principal: { AWS: sub('arn:${AWS::Partition}:iam::${AWS::AccountId}:root') },
                Action: ['kms:GenerateDataKey', 'kms:Decrypt'],
                Resource: '*',
                Condition: {
                  ArnEquals: { 'aws:PrincipalArn': [roleArn('token'), roleArn('prewarm')] },
                  StringEquals: contextCondition(),
                  'ForAllValues:StringEquals': contextKeysCondition(),
                },
              },
            ],
          },
        },
      },
      TokenFunctionRole: role('token'),
      PrewarmFunctionRole: role('prewarm'),
      TokenLambdaFunction: fn('token'),
      PrewarmLambdaFunction: fn('prewarm'),
      PrewarmRule: { Type: 'AWS::Events::Rule', Properties: {} },
      // The upstream signing key (infra/upstream-signing.cjs): kms:Sign for the two roles, one algorithm, RAW only.
      UpstreamSigningKey: {
        Type: 'AWS::KMS::Key',
        Properties: {
          KeyUsage: 'SIGN_VERIFY',
          KeySpec: 'ECC_NIST_P256',
          KeyPolicy: {
            Version: '2012-10-17',
            Statement: [
              {
                Sid: 'PublicKeyForJwks',
                Effect: 'Allow',
                Principal: { AWS: sub('arn:${AWS::Partition}:iam::${AWS::AccountId}:root') },
                Action: 'kms:GetPublicKey',
                Resource: '*',
              },
              {
                Sid: 'BrokerFunctionsSign',
                Effect: 'Allow',
                Principal: { AWS: sub('arn:${AWS::Partition}:iam::${AWS::AccountId}:root') },
                Action: 'kms:Sign',
                Resource: '*',
                Condition: {
                  ArnEquals: { 'aws:PrincipalArn': [roleArn('token'), roleArn('prewarm')] },
                  StringEquals: SIGNING_CONDITION(),
                },
              },
            ],
          },
        },
      },
      UpstreamSigningKeyUse: {
        Type: 'AWS::IAM::Policy',
        Properties: {
          PolicyName: 'upstream-signing-key',
          Roles: [{ Ref: 'TokenFunctionRole' }, { Ref: 'PrewarmFunctionRole' }],
          PolicyDocument: {
            Version: '2012-10-17',
            Statement: [
              {
                Sid: 'UpstreamSigningKeySign',
                Effect: 'Allow',
                Action: 'kms:Sign',
                Resource: [{ 'Fn::GetAtt': ['UpstreamSigningKey', 'Arn'] }],
                Condition: { StringEquals: SIGNING_CONDITION() },
              },
              {
                Sid: 'UpstreamSigningKeyPublicKey',
                Effect: 'Allow',
                Action: 'kms:GetPublicKey',
                Resource: [{ 'Fn::GetAtt': ['UpstreamSigningKey', 'Arn'] }],
              },
            ],
          },
        },
      },
      DirectRole: permission({
        Action: 'lambda:InvokeFunction',
        Principal: 'arn:aws:iam::111111111111:role/billing-service',
      }),
      DirectExporter: permission({
        Action: 'lambda:InvokeFunction',
        Principal: 'arn:aws:iam::333333333333:role/usage-exporter',
      }),
      UrlReporting: permission({
        Action: 'lambda:InvokeFunctionUrl',
        Principal: 'arn:aws:iam::111111111111:role/reporting',
        FunctionUrlAuthType: 'AWS_IAM',
      }),
      UrlInvokeReporting: permission({
        Action: 'lambda:InvokeFunction',
        Principal: 'arn:aws:iam::111111111111:role/reporting',
        InvokedViaFunctionUrl: true,
      }),
      UrlAccount: permission({
        Action: 'lambda:InvokeFunctionUrl',
        Principal: '333333333333',
        FunctionUrlAuthType: 'AWS_IAM',
      }),
      UrlInvokeAccount: permission({
        Action: 'lambda:InvokeFunction',
        Principal: '333333333333',
        InvokedViaFunctionUrl: true,
      }),
    },
  }) as unknown as CfnTemplate;

/** What test/support/infra/code-calls.ts records from each function's code, written out. */
const codeCalls = (
  tableArn: string,
  secretArn: string,
  keyArn: string,
  tableName: string,
  parameterArn: string,
  signingKeyArn?: string,
): CallsByFunction => {
  const calls = (read: string): CodeCall[] => [
    { what: read, action: 'dynamodb:GetItem', resource: tableArn, context: {} },
    { what: 'UpdateItem on the token table', action: 'dynamodb:UpdateItem', resource: tableArn, context: {} },
    {
      what: 'UpdateItem (ReturnValues ALL_NEW)',
      action: 'dynamodb:UpdateItem',
      resource: tableArn,
      context: { 'dynamodb:ReturnValues': 'ALL_NEW' },
    },
    ...['AWSCURRENT', 'AWSPREVIOUS'].map((stage) => ({
      what: `GetSecretValue ${stage}`,
      action: 'secretsmanager:GetSecretValue',
      resource: secretArn,
      context: { 'secretsmanager:VersionStage': stage },
    })),
    ...['GenerateDataKey', 'Decrypt'].map((command) => ({
      what: `${command} with the code's context`,
      action: `kms:${command}`,
      resource: keyArn,
      context: kmsContext(encryptionContextFor(tableName)),
    })),
    ...(signingKeyArn
      ? [
          { what: 'GetPublicKey of the signing key', action: 'kms:GetPublicKey', resource: signingKeyArn, context: {} },
          {
            what: 'Sign with the signing key (ECDSA_SHA_256, RAW)',
            action: 'kms:Sign',
            resource: signingKeyArn,
            context: SIGNING_CONDITION(),
          },
        ]
      : []),
  ];
  const readCallers: CodeCall = {
    what: 'GetParameter of the callers parameter',
    action: 'ssm:GetParameter',
    resource: parameterArn,
    context: {},
  };
  return {
    token: [...calls('GetItem on the token table'), readCallers],
    prewarm: calls('GetItem on the token table (consistent read)'),
  };
};

type Statement = Json & {
  Action: string | string[];
  Condition?: { StringEquals?: Record<string, unknown>; 'ForAllValues:StringEquals'?: Record<string, unknown> };
};
const statements = (t: CfnTemplate, id: string): Statement[] => {
  const { Properties } = t.Resources[id]!;
  if (id.endsWith('Key')) return (Properties.KeyPolicy as { Statement: Statement[] }).Statement;
  if (Properties.PolicyDocument) return (Properties.PolicyDocument as { Statement: Statement[] }).Statement;
  return (Properties.Policies as { PolicyDocument: { Statement: Statement[] } }[])[0]!.PolicyDocument.Statement;
};

const tableFailures = async (template: CfnTemplate): Promise<string[]> => {
  const iam = brokerIamOf(resolveTemplate(template, SAMPLE));
  return failures(
    await evaluateTable(
      iam,
      brokerRows(
        iam,
        codeCalls(iam.tableArn, iam.secretArn, iam.keyArn, iam.tableName, iam.callersParameter!.arn, iam.signingKeyArn),
      ),
    ),
  );
};

describe('the IAM evaluation table', () => {
  it('holds for a template of the broker shape (the control for the broken copies below)', async () => {
    expect(await tableFailures(fixture())).toEqual([]);
  });

  it('fails exactly the UpdateItem rows of a role whose policy lost dynamodb:UpdateItem', async () => {
    const broken = fixture();
    statements(broken, 'TokenFunctionRole').find((s) => s.Sid === 'TokenCacheTable')!.Action = ['dynamodb:GetItem'];
    expect(await tableFailures(broken)).toEqual([
      'token role: UpdateItem on the token table: expected Allowed, got Denied',
      'token role: UpdateItem (ReturnValues ALL_NEW): expected Allowed, got Denied',
    ]);
  });

  it('fails the Decrypt and GenerateDataKey rows when the key policy lost its statement for the function roles', async () => {
    const broken = fixture();
    (broken.Resources.TokenKmsKey!.Properties.KeyPolicy as { Statement: Statement[] }).Statement[0]!.Action =
      'kms:DescribeKey';
    expect(await tableFailures(broken)).toEqual([
      "token role: GenerateDataKey with the code's context: expected Allowed, got Denied",
      "token role: Decrypt with the code's context: expected Allowed, got Denied",
      "prewarm role: GenerateDataKey with the code's context: expected Allowed, got Denied",
      "prewarm role: Decrypt with the code's context: expected Allowed, got Denied",
    ]);
  });

  it("fails the other-stage rows when the policies no longer bind the context to the stage's table (the raw evaluation denies)", async () => {
    const broken = fixture();
    for (const id of ['TokenKmsKey', 'TokenFunctionRole', 'PrewarmFunctionRole']) {
      for (const s of statements(broken, id)) delete s.Condition?.StringEquals?.['kms:EncryptionContext:tokenTable'];
    }
    expect(await tableFailures(broken)).toEqual(
      ['token', 'prewarm'].flatMap((r) =>
        [`${r} role`, `${r} role, ${EXISTING_KEY}`].flatMap((label) => [
          `${label}: Decrypt with another stage's table in the context: expected Denied, got Allowed`,
          `${label}: GenerateDataKey with another stage's table in the context: expected Denied, got Allowed`,
        ]),
      ),
    );
  });

  it('fails the extra-key rows when the policies no longer hold the context to its two keys (ForAllValues)', async () => {
    const broken = fixture();
    for (const id of ['TokenKmsKey', 'TokenFunctionRole', 'PrewarmFunctionRole']) {
      for (const s of statements(broken, id)) delete s.Condition?.['ForAllValues:StringEquals'];
    }
    expect(await tableFailures(broken)).toEqual(
      ['token', 'prewarm'].flatMap((r) =>
        [`${r} role`, `${r} role, ${EXISTING_KEY}`].flatMap((label) =>
          ['GenerateDataKey', 'Decrypt'].map(
            (action) => `${label}: ${action} with the code's context plus an extra key: expected Denied, got Allowed`,
          ),
        ),
      ),
    );
  });

  it('fails only the existing-key extra-key rows when just the role policy lost ForAllValues (the key policy still guards its own key)', async () => {
    const broken = fixture();
    delete statements(broken, 'TokenFunctionRole').find((s) => s.Sid === 'TokenEnvelopeKey')!.Condition![
      'ForAllValues:StringEquals'
    ];
    expect(await tableFailures(broken)).toEqual(
      ['GenerateDataKey', 'Decrypt'].map(
        (action) =>
          `token role, ${EXISTING_KEY}: ${action} with the code's context plus an extra key: expected Denied, got Allowed`,
      ),
    );
  });

  it('fails the direct-invoke rows of the URL grantees when their InvokeFunction permission lost InvokedViaFunctionUrl', async () => {
    const broken = fixture();
    for (const id of ['UrlInvokeReporting', 'UrlInvokeAccount'])
      delete broken.Resources[id]!.Properties.InvokedViaFunctionUrl;
    expect(await tableFailures(broken)).toEqual([
      'URL grantee in another account, lambda:* on *: lambda:InvokeFunction {"lambda:InvokedViaFunctionUrl":"false"}: expected Denied, got Allowed',
      'URL grantee role of the account, no identity policy: lambda:InvokeFunction {"lambda:InvokedViaFunctionUrl":"false"}: expected Denied, got Allowed',
    ]);
  });

  it("fails the role's KMS scope rows when its key statement is kms:* on * without a condition (only the role policy guards an existing key)", async () => {
    const broken = fixture();
    const key = statements(broken, 'TokenFunctionRole').find((s) => s.Sid === 'TokenEnvelopeKey')!;
    Object.assign(key, { Action: 'kms:*', Resource: '*' });
    delete key.Condition;
    expect(await tableFailures(broken)).toEqual([
      ...[
        'Decrypt without an encryption context',
        'Decrypt with another purpose',
        "Decrypt with another stage's table in the context",
        "GenerateDataKey with another stage's table in the context",
        "GenerateDataKey with the code's context plus an extra key",
        "Decrypt with the code's context plus an extra key",
        "Encrypt with the broker's context",
        'CreateGrant on the token key',
        'PutKeyPolicy on the token key',
        'ScheduleKeyDeletion of the token key',
      ].map((row) => `token role, ${EXISTING_KEY}: ${row}: expected Denied, got Allowed`),
      // kms:* on * also signs with any key, any algorithm, where only the role policy guards.
      ...[
        'Sign with another algorithm (ECDSA_SHA_384)',
        'Sign a digest (MessageType DIGEST, ECDSA_SHA_256)',
        'Verify with the signing key',
        'CreateGrant on the signing key',
        'PutKeyPolicy on the signing key',
        'ScheduleKeyDeletion of the signing key',
      ].map((row) => `token role, ${EXISTING_SIGNING_KEY}: ${row}: expected Denied, got Allowed`),
      "token role: Sign with another key (AWS's default key policy), the code's algorithm: expected Denied, got Allowed",
      ...['Decrypt', 'GenerateDataKey'].map(
        (action) =>
          `token role: ${action} on another key (AWS's default key policy), with the broker's context: expected Denied, got Allowed`,
      ),
    ]);
  });

  it('fails the context and other-key rows when the role may GenerateDataKey and Decrypt on * without a condition', async () => {
    const broken = fixture();
    const key = statements(broken, 'TokenFunctionRole').find((s) => s.Sid === 'TokenEnvelopeKey')!;
    key.Resource = '*';
    delete key.Condition;
    expect(await tableFailures(broken)).toEqual([
      ...[
        'Decrypt without an encryption context',
        'Decrypt with another purpose',
        "Decrypt with another stage's table in the context",
        "GenerateDataKey with another stage's table in the context",
        "GenerateDataKey with the code's context plus an extra key",
        "Decrypt with the code's context plus an extra key",
      ].map((row) => `token role, ${EXISTING_KEY}: ${row}: expected Denied, got Allowed`),
      ...['Decrypt', 'GenerateDataKey'].map(
        (action) =>
          `token role: ${action} on another key (AWS's default key policy), with the broker's context: expected Denied, got Allowed`,
      ),
    ]);
  });

  it('fails the other-algorithm rows of both roles when their policy no longer pins kms:SigningAlgorithm', async () => {
    const broken = fixture();
    delete statements(broken, 'UpstreamSigningKeyUse')[0]!.Condition!.StringEquals!['kms:SigningAlgorithm'];
    expect(await tableFailures(broken)).toEqual(
      ['token', 'prewarm'].map(
        (r) =>
          `${r} role, ${EXISTING_SIGNING_KEY}: Sign with another algorithm (ECDSA_SHA_384): expected Denied, got Allowed`,
      ),
    );
  });

  it('fails the digest rows of both roles when their policy no longer pins kms:MessageType RAW', async () => {
    const broken = fixture();
    delete statements(broken, 'UpstreamSigningKeyUse')[0]!.Condition!.StringEquals!['kms:MessageType'];
    expect(await tableFailures(broken)).toEqual(
      ['token', 'prewarm'].map(
        (r) =>
          `${r} role, ${EXISTING_SIGNING_KEY}: Sign a digest (MessageType DIGEST, ECDSA_SHA_256): expected Denied, got Allowed`,
      ),
    );
  });

  it("fails the admin's Sign row when the signing key's policy no longer names the function roles", async () => {
    const broken = fixture();
    delete (statements(broken, 'UpstreamSigningKey')[1]!.Condition as Record<string, unknown>).ArnEquals;
    expect(await tableFailures(broken)).toEqual([
      'account admin (kms:* on *): Sign with the signing key: expected Denied, got Allowed',
    ]);
  });

  it("fails the roles' Sign rows when the signing key's policy lost its statement for them", async () => {
    const broken = fixture();
    statements(broken, 'UpstreamSigningKey')[1]!.Action = 'kms:DescribeKey';
    expect(await tableFailures(broken)).toEqual(
      ['token', 'prewarm'].map(
        (r) => `${r} role: Sign with the signing key (ECDSA_SHA_256, RAW): expected Allowed, got Denied`,
      ),
    );
  });

  it('fails the other-parameter rows when the token role may GetParameter on every parameter of its path', async () => {
    const broken = fixture();
    statements(broken, 'TokenFunctionRole').find((s) => s.Sid === 'CallersParameter')!.Resource = sub(
      'arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/limitrail-token-broker/*',
    );
    expect(await tableFailures(broken)).toEqual([
      "token role: GetParameter of another stage's callers parameter: expected Denied, got Allowed",
      'token role: GetParameter of a parameter named like it plus a suffix: expected Denied, got Allowed',
    ]);
  });

  it('fails the allowed GetParameter row when the token role lost its statement on the callers parameter', async () => {
    const broken = fixture();
    const role = statements(broken, 'TokenFunctionRole');
    role.splice(
      role.findIndex((s) => s.Sid === 'CallersParameter'),
      1,
    );
    expect(await tableFailures(broken)).toEqual([
      'token role: GetParameter of the callers parameter: expected Allowed, got Denied',
    ]);
  });

  it("builds each role's allowed rows from its own function's calls, and refuses a function without any", async () => {
    const template = fixture();
    delete template.Resources.UpstreamSigningKey;
    delete template.Resources.UpstreamSigningKeyUse;
    const iam = brokerIamOf(resolveTemplate(template, SAMPLE));
    const { token, prewarm } = codeCalls(
      iam.tableArn,
      iam.secretArn,
      iam.keyArn,
      iam.tableName,
      iam.callersParameter!.arn,
    );
    const rows = brokerRows(iam, { token: token!, prewarm: prewarm!.slice(0, 1) });
    expect(
      rows
        .filter((r) => r.name.startsWith('prewarm role: ') && r.expect === 'Allowed' && !r.action.startsWith('logs:'))
        .map((r) => r.name),
    ).toEqual(['prewarm role: GetItem on the token table (consistent read)']);
    expect(() => brokerRows(iam, { token: token! })).toThrow('no recorded AWS calls of the prewarm function');
  });
});
