/**
 * A packaged CloudFormation template with its intrinsic functions resolved the way CloudFormation would for one
 * sample account, region and stack: conditions evaluated (resources whose condition is false dropped, `Fn::If`
 * branches chosen, `AWS::NoValue` removed), `Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join`, `Fn::Select`, `Fn::Split`
 * replaced by strings. Names CloudFormation generates (a table without TableName, a key id) get sample values of the
 * real shape. Anything this resolver does not know (another intrinsic, an attribute of another resource type)
 * throws, so a template change never slips through half-resolved.
 */
import { createHash } from 'node:crypto';

import type { CfnResource, CfnTemplate, Json } from '../stacks/packaged-stack';

export interface SampleEnvironment {
  accountId: string;
  region: string;
  /** The stack osls deploys: `<service>-<stage>`. */
  stackName: string;
  partition?: string;
}

export interface ResolvedTemplate {
  env: Required<SampleEnvironment>;
  /** The resources that exist under the evaluated conditions, every property a plain value. */
  resources: Record<string, CfnResource>;
  /** What `Ref` of a resource returns (name or id). */
  ref(logicalId: string): string;
  /** What `Fn::GetAtt [logicalId, Arn]` returns. */
  arn(logicalId: string): string;
}

/** The sample id of the stack's token key: the shape of a KMS key id. */
export const SAMPLE_KMS_KEY_ID = '0b8e2f4c-1d3a-4b5c-9e7f-2a6d8c0e1f3b';

/** Any other key of the stack (the upstream signing key): a key id's shape, derived from its logical id. */
const sampleKeyId = (logicalId: string): string => {
  const hex = createHash('sha256').update(logicalId).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
};

const NO_VALUE = Symbol('AWS::NoValue');

/** CloudFormation's generated suffix: 13 upper-case letters and digits, here derived from the logical id. */
const generatedSuffix = (logicalId: string): string =>
  createHash('sha256').update(logicalId).digest('hex').slice(0, 13).toUpperCase();

export const resolveTemplate = (template: CfnTemplate, sample: SampleEnvironment): ResolvedTemplate => {
  const env = { partition: 'aws', ...sample };
  const { accountId, region, partition, stackName } = env;
  const resourceOf = (id: string): CfnResource => {
    const resource = template.Resources[id];
    if (!resource) throw new Error(`no resource ${id} in the template`);
    return resource;
  };
  const name = (id: string, property: string, generated = `${stackName}-${id}-${generatedSuffix(id)}`): string => {
    const given = resourceOf(id).Properties?.[property];
    return given === undefined ? generated : String(resolve(given));
  };

  const ref = (id: string): string => {
    const pseudo: Record<string, string> = {
      'AWS::AccountId': accountId,
      'AWS::Region': region,
      'AWS::Partition': partition,
      'AWS::StackName': stackName,
      'AWS::URLSuffix': 'amazonaws.com',
    };
    if (pseudo[id] !== undefined) return pseudo[id];
    const { Type } = resourceOf(id);
    switch (Type) {
      case 'AWS::DynamoDB::Table':
        return name(id, 'TableName');
      case 'AWS::KMS::Key':
        return id === 'TokenKmsKey' ? SAMPLE_KMS_KEY_ID : sampleKeyId(id);
      case 'AWS::IAM::Role':
        return name(id, 'RoleName');
      case 'AWS::Lambda::Function':
        return name(id, 'FunctionName');
      case 'AWS::Logs::LogGroup':
        return name(id, 'LogGroupName');
      case 'AWS::S3::Bucket':
        return name(id, 'BucketName', `${stackName}-${id}-${generatedSuffix(id)}`.toLowerCase());
      default:
        return `${stackName}-${id}-${generatedSuffix(id)}`;
    }
  };

  const arn = (id: string): string => {
    const { Type } = resourceOf(id);
    switch (Type) {
      case 'AWS::DynamoDB::Table':
        return `arn:${partition}:dynamodb:${region}:${accountId}:table/${ref(id)}`;
      case 'AWS::KMS::Key':
        return `arn:${partition}:kms:${region}:${accountId}:key/${ref(id)}`;
      case 'AWS::IAM::Role':
        return `arn:${partition}:iam::${accountId}:role/${ref(id)}`;
      case 'AWS::Lambda::Function':
        return `arn:${partition}:lambda:${region}:${accountId}:function:${ref(id)}`;
      case 'AWS::Logs::LogGroup':
        return `arn:${partition}:logs:${region}:${accountId}:log-group:${ref(id)}:*`;
      case 'AWS::Events::Rule':
        return `arn:${partition}:events:${region}:${accountId}:rule/${name(id, 'Name')}`;
      case 'AWS::S3::Bucket':
        return `arn:${partition}:s3:::${ref(id)}`;
      case 'AWS::CloudWatch::Alarm':
        return `arn:${partition}:cloudwatch:${region}:${accountId}:alarm:${name(id, 'AlarmName')}`;
      default:
        throw new Error(`no sample Arn for ${id} (${Type})`);
    }
  };

  const getAtt = (id: string, attribute: string): string => {
    if (attribute === 'Arn') return arn(id);
    throw new Error(`no sample value for Fn::GetAtt ${id}.${attribute}`);
  };

  const conditions = new Map<string, boolean>();
  const condition = (conditionName: string): boolean => {
    const known = conditions.get(conditionName);
    if (known !== undefined) return known;
    const definition = template.Conditions?.[conditionName];
    if (definition === undefined) throw new Error(`no condition ${conditionName} in the template`);
    const value = resolve(definition);
    if (typeof value !== 'boolean') throw new Error(`condition ${conditionName} is not a boolean`);
    conditions.set(conditionName, value);
    return value;
  };

  const sub = (text: string, variables: Json = {}): string =>
    text.replace(/\$\{([^}]*)\}/g, (_whole, expression: string) => {
      if (expression.startsWith('!')) return `\${${expression.slice(1)}}`; // ${!Literal}
      if (expression in variables) return String(resolve(variables[expression]));
      const [id, attribute] = expression.split('.');
      return attribute ? getAtt(id!, attribute) : ref(id!);
    });

  const resolveFunction = (fn: string, args: unknown): unknown => {
    const list = (value: unknown): unknown[] => {
      const resolved = resolve(value);
      if (!Array.isArray(resolved)) throw new Error(`${fn} expects a list`);
      return resolved;
    };
    switch (fn) {
      case 'Ref':
        return args === 'AWS::NoValue' ? NO_VALUE : ref(args as string);
      case 'Fn::GetAtt': {
        const [id, attribute] = typeof args === 'string' ? args.split('.') : (args as string[]);
        return getAtt(id!, attribute!);
      }
      case 'Fn::Sub':
        return typeof args === 'string' ? sub(args) : sub((args as [string, Json])[0], (args as [string, Json])[1]);
      case 'Fn::Join': {
        const [separator, values] = args as [string, unknown];
        return list(values).join(separator);
      }
      case 'Fn::Select': {
        const [index, values] = args as [unknown, unknown];
        return list(values)[Number(resolve(index))];
      }
      case 'Fn::Split': {
        const [separator, value] = args as [string, unknown];
        return String(resolve(value)).split(separator);
      }
      case 'Fn::Equals': {
        const [a, b] = list(args);
        return JSON.stringify(a) === JSON.stringify(b);
      }
      case 'Fn::Not':
        return !list(args)[0];
      case 'Fn::And':
        return list(args).every(Boolean);
      case 'Fn::Or':
        return list(args).some(Boolean);
      case 'Fn::If': {
        const [conditionName, whenTrue, whenFalse] = args as [string, unknown, unknown];
        return resolve(condition(conditionName) ? whenTrue : whenFalse);
      }
      case 'Condition':
        return condition(args as string);
      default:
        throw new Error(`intrinsic ${fn} is not resolved by test/support/infra/cfn-resolve.ts`);
    }
  };

  function resolve(value: unknown): unknown {
    if (Array.isArray(value)) return value.map(resolve).filter((v) => v !== NO_VALUE);
    if (value === null || typeof value !== 'object') return value;
    const keys = Object.keys(value);
    const [only] = keys;
    if (keys.length === 1 && (only === 'Ref' || only === 'Condition' || only!.startsWith('Fn::'))) {
      return resolveFunction(only!, (value as Json)[only!]);
    }
    const out: Json = {};
    for (const [key, v] of Object.entries(value)) {
      const resolved = resolve(v);
      if (resolved !== NO_VALUE) out[key] = resolved;
    }
    return out;
  }

  const resources: Record<string, CfnResource> = {};
  for (const [id, resource] of Object.entries(template.Resources)) {
    if (resource.Condition !== undefined && !condition(resource.Condition)) continue;
    resources[id] = { ...resource, Properties: resolve(resource.Properties ?? {}) as Json };
  }
  return { env, resources, ref, arn };
};
