/**
 * The packaged template (`osls package --stage ci`, with the callers parameter the stack creates
 * (`--param callersParameter=create`), intrinsics resolved for a sample account and region) against
 * the CloudFormation resource specification (test/support/infra/cfn-spec.ts, @aws-cdk/aws-service-spec): what
 * CloudFormation would reject as a malformed resource fails here instead of in a deploy. The last tests show the
 * check fails on a template it should fail on.
 */
import { beforeAll, describe, expect, it } from 'vitest';

import { resolveTemplate } from '../support/infra/cfn-resolve';
import { API_VALUES, specDatabase, specProblems } from '../support/infra/cfn-spec';
import { type CfnResource, packageStage } from '../support/stacks/packaged-stack';

const SAMPLE = { accountId: '111111111111', region: 'eu-west-1', stackName: 'limitrail-token-broker-ci' };
let resources: Record<string, CfnResource>;

beforeAll(async () => {
  const [packaged] = await Promise.all([packageStage('ci', { callersParameter: 'create' }), specDatabase()]);
  try {
    resources = resolveTemplate(packaged.template, SAMPLE).resources;
  } finally {
    await packaged.remove();
  }
}, 120_000);

describe('the packaged template against the CloudFormation resource specification', () => {
  it('has only resource types that exist, with known properties of the right types and every required property', async () => {
    expect(Object.keys(resources).length).toBeGreaterThan(20);
    expect(await specProblems(resources)).toEqual([]);
  });

  it('checks every resource type of the stack: functions, URL, permissions, roles, the signing key policy, table, keys, aliases, rule, alarms, dashboard, logs, callers parameter', () => {
    expect([...new Set(Object.values(resources).map((r) => r.Type))].sort()).toEqual([
      'AWS::CloudWatch::Alarm',
      'AWS::CloudWatch::Dashboard',
      'AWS::DynamoDB::Table',
      'AWS::Events::Rule',
      'AWS::IAM::Policy',
      'AWS::IAM::Role',
      'AWS::KMS::Alias',
      'AWS::KMS::Key',
      'AWS::Lambda::Function',
      'AWS::Lambda::Permission',
      'AWS::Lambda::Url',
      'AWS::Lambda::Version',
      'AWS::Logs::LogGroup',
      'AWS::S3::Bucket',
      'AWS::S3::BucketPolicy',
      'AWS::SSM::Parameter',
    ]);
  });
});

describe('the runtime and architecture of the functions', () => {
  it('are nodejs24.x and arm64, values the Lambda API accepts for AWS::Lambda::Function', async () => {
    const functions = Object.entries(resources).filter(([, r]) => r.Type === 'AWS::Lambda::Function');
    expect(functions.map(([id]) => id).sort()).toEqual(['PrewarmLambdaFunction', 'TokenLambdaFunction']);
    for (const [, fn] of functions) {
      expect([fn.Properties.Runtime, fn.Properties.Architectures]).toEqual(['nodejs24.x', ['arm64']]);
    }
    const api = API_VALUES['AWS::Lambda::Function']!;
    expect(api.Runtime!.values).toContain('nodejs24.x');
    expect(api.Architectures!.values).toEqual(expect.arrayContaining(['arm64', 'x86_64']));
    expect(await specProblems(Object.fromEntries(functions))).toEqual([]);
  });
});

describe('the specification check', () => {
  const copy = (): Record<string, CfnResource> => structuredClone(resources);

  it('reports an unknown resource type', async () => {
    const broken = copy();
    broken.TokenTable!.Type = 'AWS::DynamoDB::Tabel';
    expect(await specProblems(broken)).toEqual(['TokenTable: resource type AWS::DynamoDB::Tabel does not exist']);
  });

  it('reports an unknown property, nested ones too', async () => {
    const broken = copy();
    broken.TokenLambdaFunction!.Properties.MemorySizeMb = 256;
    (broken.TokenTable!.Properties.TimeToLiveSpecification as Record<string, unknown>).AttributName = 'x';
    expect(await specProblems(broken)).toEqual([
      'TokenLambdaFunction (AWS::Lambda::Function).MemorySizeMb: no such property',
      'TokenTable (AWS::DynamoDB::Table).TimeToLiveSpecification.AttributName: no such property',
    ]);
  });

  it('reports a value of the wrong type or outside the allowed values', async () => {
    const broken = copy();
    broken.TokenLambdaFunction!.Properties.Timeout = 'fifteen';
    broken.TokenLambdaFunctionUrl!.Properties.AuthType = 'IAM';
    const problems = await specProblems(broken);
    expect(problems).toHaveLength(2);
    expect(problems[0]).toContain('TokenLambdaFunction (AWS::Lambda::Function).Timeout: "fifteen" is not an integer');
    expect(problems[1]).toContain(
      'TokenLambdaFunctionUrl (AWS::Lambda::Url).AuthType: "IAM" is not one of AWS_IAM, NONE',
    );
  });

  it('reports a runtime or an architecture the Lambda API does not accept', async () => {
    const broken = copy();
    broken.TokenLambdaFunction!.Properties.Runtime = 'nodejs24';
    broken.PrewarmLambdaFunction!.Properties.Architectures = ['aarch64'];
    expect(await specProblems(broken)).toEqual([
      'TokenLambdaFunction (AWS::Lambda::Function).Runtime: "nodejs24" is not a value of the Lambda API Runtime (@aws-sdk/client-lambda)',
      'PrewarmLambdaFunction (AWS::Lambda::Function).Architectures[0]: "aarch64" is not a value of the Lambda API Architecture (@aws-sdk/client-lambda)',
    ]);
  });

  it('reports a missing required property, and an unknown deletion policy', async () => {
    const broken = copy();
    delete broken.TokenTable!.Properties.KeySchema;
    broken.TokenKmsKey!.DeletionPolicy = 'Remove';
    expect(await specProblems(broken)).toEqual([
      'TokenTable (AWS::DynamoDB::Table).KeySchema: required, missing',
      'TokenKmsKey.DeletionPolicy: "Remove" is not a deletion policy',
    ]);
  });
});
