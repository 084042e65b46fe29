/**
 * Resources checked against the CloudFormation resource specification: the registry schemas of every AWS resource
 * type as @aws-cdk/aws-service-spec ships them (the database the AWS CDK generates its L1 constructs from). For each
 * resource: the type exists; every property exists, recursively through property types, lists and maps; each value
 * has the property's type (or one of its previous types, which CloudFormation still accepts) and, for strings and
 * integers with a fixed set, an allowed value; every required property is present; the resource attributes
 * (DeletionPolicy, ...) are ones CloudFormation knows. Where the specification leaves a value open (a plain string)
 * but the service's API fixes the set, the value must be one the API accepts (API_VALUES). Run it on a resolved
 * template (cfn-resolve.ts): values are then what CloudFormation would pass to the resource.
 */
import { loadAwsServiceSpec } from '@aws-cdk/aws-service-spec';
import {
  type PropertyType,
  type ResourceProperties,
  RichProperty,
  RichSpecDatabase,
  type SpecDatabase,
} from '@aws-cdk/service-spec-types';
import { Architecture, Runtime } from '@aws-sdk/client-lambda';

import type { CfnResource } from '../stacks/packaged-stack';

const RESOURCE_ATTRIBUTES = new Set([
  'Type',
  'Properties',
  'DependsOn',
  'Condition',
  'DeletionPolicy',
  'UpdateReplacePolicy',
  'Metadata',
  'UpdatePolicy',
  'CreationPolicy',
]);
const POLICIES = new Set(['Delete', 'Retain', 'RetainExceptOnCreate', 'Snapshot']);

/**
 * Values the specification types as any string but the service's API limits to a set: the enums of the API model
 * the AWS SDK is generated from (pinned in package.json like the specification). CloudFormation passes these
 * properties to the API (Lambda CreateFunction), which refuses any other value. By resource type, then property;
 * a list property's every element is checked.
 */
export const API_VALUES: Record<string, Record<string, { source: string; values: readonly string[] }>> = {
  'AWS::Lambda::Function': {
    Runtime: { source: 'Lambda API Runtime (@aws-sdk/client-lambda)', values: Object.values(Runtime) },
    Architectures: { source: 'Lambda API Architecture (@aws-sdk/client-lambda)', values: Object.values(Architecture) },
  },
};

let database: Promise<SpecDatabase> | undefined;
/** The specification, loaded once per test file (about 3 s). */
export const specDatabase = (): Promise<SpecDatabase> => (database ??= loadAwsServiceSpec());

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNumeric = (v: unknown) =>
  typeof v === 'number' || (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v)));

export const specProblems = async (resources: Record<string, CfnResource>): Promise<string[]> => {
  const db = await specDatabase();
  const rich = new RichSpecDatabase(db);
  const problems: string[] = [];

  /** Why `value` is not of `type` (undefined when it is); `at` names the place for nested problems. */
  const mismatch = (type: PropertyType, value: unknown, at: string): string | undefined => {
    switch (type.type) {
      case 'string':
        if (typeof value !== 'string') return `${at}: ${JSON.stringify(value)} is not a string`;
        if (type.allowedValues && !type.allowedValues.includes(value))
          return `${at}: "${value}" is not one of ${type.allowedValues.join(', ')}`;
        return undefined;
      case 'number':
        return isNumeric(value) ? undefined : `${at}: ${JSON.stringify(value)} is not a number`;
      case 'integer':
        if (!isNumeric(value) || !Number.isInteger(Number(value)))
          return `${at}: ${JSON.stringify(value)} is not an integer`;
        if (type.allowedValues && !type.allowedValues.includes(Number(value)))
          return `${at}: ${String(value)} is not one of ${type.allowedValues.join(', ')}`;
        return undefined;
      case 'boolean':
        return typeof value === 'boolean' || value === 'true' || value === 'false'
          ? undefined
          : `${at}: ${JSON.stringify(value)} is not a boolean`;
      case 'json':
        return isObject(value) || Array.isArray(value)
          ? undefined
          : `${at}: ${JSON.stringify(value)} is not JSON (an object)`;
      case 'date-time':
        return typeof value === 'string' ? undefined : `${at}: ${JSON.stringify(value)} is not a date-time string`;
      case 'null':
        return value === null ? undefined : `${at}: ${JSON.stringify(value)} is not null`;
      case 'tag':
        return isObject(value) &&
          typeof value.Key === 'string' &&
          typeof value.Value === 'string' &&
          Object.keys(value).length === 2
          ? undefined
          : `${at}: ${JSON.stringify(value)} is not a tag {Key, Value}`;
      case 'array':
        if (!Array.isArray(value)) return `${at}: ${JSON.stringify(value)} is not a list`;
        return value.map((item, i) => mismatch(type.element, item, `${at}[${i}]`)).find(Boolean);
      case 'map':
        if (!isObject(value)) return `${at}: ${JSON.stringify(value)} is not a map`;
        return Object.entries(value)
          .map(([k, v]) => mismatch(type.element, v, `${at}.${k}`))
          .find(Boolean);
      case 'union': {
        const each = type.types.map((t) => mismatch(t, value, at));
        return each.some((m) => m === undefined) ? undefined : each.join('; or ');
      }
      case 'ref': {
        const definition = rich.tryFindDef(type);
        if (!definition) return `${at}: the specification has no definition for this property type`;
        if (!isObject(value)) return `${at}: ${JSON.stringify(value)} is not an object (${definition.name})`;
        return checkProperties(definition.properties, value, at)[0];
      }
      default:
        return `${at}: property type ${(type as { type: string }).type} is not known to test/support/infra/cfn-spec.ts`;
    }
  };

  /** Every problem of `values` against `properties`: unknown names, missing required ones, mistyped values. */
  const checkProperties = (properties: ResourceProperties, values: Record<string, unknown>, at: string): string[] => {
    const found: string[] = [];
    for (const [name, property] of Object.entries(properties)) {
      if (property.required && values[name] === undefined) found.push(`${at}.${name}: required, missing`);
    }
    for (const [name, value] of Object.entries(values)) {
      const property = properties[name];
      if (!property) {
        found.push(`${at}.${name}: no such property`);
        continue;
      }
      const tries = new RichProperty(property).types().map((t) => mismatch(t, value, `${at}.${name}`));
      if (tries.every((m) => m !== undefined)) found.push(tries.join('; or '));
    }
    return found;
  };

  for (const [id, resource] of Object.entries(resources)) {
    for (const key of Object.keys(resource))
      if (!RESOURCE_ATTRIBUTES.has(key)) problems.push(`${id}: ${key} is not a resource attribute`);
    for (const key of ['DeletionPolicy', 'UpdateReplacePolicy'] as const) {
      const policy = resource[key];
      if (policy !== undefined && !POLICIES.has(policy))
        problems.push(`${id}.${key}: "${policy}" is not a deletion policy`);
    }
    const [spec] = db.lookup('resource', 'cloudFormationType', 'equals', resource.Type);
    if (!spec) {
      problems.push(`${id}: resource type ${resource.Type} does not exist`);
      continue;
    }
    problems.push(...checkProperties(spec.properties, resource.Properties ?? {}, `${id} (${resource.Type})`));
    for (const [name, { source, values }] of Object.entries(API_VALUES[resource.Type] ?? {})) {
      const value = resource.Properties?.[name];
      if (value === undefined) continue;
      for (const [at, item] of Array.isArray(value) ? value.map((v, i) => [`${name}[${i}]`, v]) : [[name, value]]) {
        if (typeof item !== 'string' || !values.includes(item))
          problems.push(`${id} (${resource.Type}).${at}: ${JSON.stringify(item)} is not a value of the ${source}`);
      }
    }
  }
  return problems;
};
