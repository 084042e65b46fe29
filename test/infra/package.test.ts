/**
 * What `osls package --stage ci` produces: the zip that would be uploaded and the CloudFormation template
 * that would be deployed. Runs fully offline: dummy credentials, and every AWS endpoint pointed at a closed
 * loopback port, so any call to AWS fails the packaging (and this test) instead of leaving the machine.
 */

import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TABLE_PARTITION_KEY, TABLE_TTL_ATTRIBUTE } from '../../functions/lib/cache/table/table-schema';
import { encryptionContextFor } from '../../functions/lib/cache/table/token-cipher';
import { ENV } from '../../functions/lib/config/env-names';
import {
  EmfWriter,
  METRIC_FAMILIES,
  METRIC_NAMES,
  METRICS_DIMENSION,
  METRICS_NAMESPACE,
  type MetricName,
  Metrics,
} from '../../functions/lib/shared/metrics';
import { captureLogLines, stopCapturing } from '../support/log-capture';
import {
  type Json,
  type PackagedStage,
  packageStage,
  type CfnResource as Resource,
  ROOT,
} from '../support/stacks/packaged-stack';

interface Statement {
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Principal?: unknown;
  Condition?: Json;
}

/**
 * IAM actions of one AWS service that functions/ calls: every `XxxCommand` imported from its SDK client becomes
 * `service:Xxx`. Keeps the role's actions equal to what the code does, as the code changes.
 */
const SDK_PACKAGES: Record<string, string> = {
  dynamodb: 'client-dynamodb',
  kms: 'client-kms',
  secretsmanager: 'client-secrets-manager',
};
const actionsTheCodeCalls = async (service: string): Promise<string[]> => {
  const { readdir } = await import('node:fs/promises');
  const files = (await readdir(join(ROOT, 'functions'), { recursive: true })).filter((f) => f.endsWith('.ts'));
  const actions = new Set<string>();
  const importFrom = new RegExp(`import\\s*{([^}]*)}\\s*from\\s*'@aws-sdk/${SDK_PACKAGES[service]}'`, 'g');
  for (const file of files) {
    const source = await readFile(join(ROOT, 'functions', file), 'utf8');
    for (const [, names] of source.matchAll(importFrom)) {
      for (const [, command] of names!.matchAll(/\b(\w+)Command\b/g)) actions.add(`${service}:${command}`);
    }
  }
  return [...actions].sort();
};

/** The file names in a zip, from its central directory (enough for listing; no extraction). */
const zipEntries = (zip: Buffer): string[] => {
  const EOCD = 0x06054b50;
  const CENTRAL = 0x02014b50;
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 0xffff); i -= 1) {
    if (zip.readUInt32LE(i) === EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('not a zip file (no end of central directory)');
  const count = zip.readUInt16LE(eocd + 10);
  let offset = zip.readUInt32LE(eocd + 16);
  const names: string[] = [];
  for (let n = 0; n < count; n += 1) {
    if (zip.readUInt32LE(offset) !== CENTRAL) throw new Error(`bad central directory entry ${n}`);
    const nameLength = zip.readUInt16LE(offset + 28);
    const extraLength = zip.readUInt16LE(offset + 30);
    const commentLength = zip.readUInt16LE(offset + 32);
    names.push(zip.toString('utf8', offset + 46, offset + 46 + nameLength));
    offset += 46 + nameLength + extraLength + commentLength;
  }
  return names;
};

/** package-lock.json's `packages`: each installed path (node_modules/...), flagged `dev` when only devDependencies need it. */
type LockPackages = Record<string, { dev?: boolean; version?: string }>;

/**
 * The inputs of an esbuild metafile (dist/<fn>/meta.json) that must never be in a bundle: anything under
 * node_modules/@cloud-copilot/ (the AGPL-3.0 IAM evaluator of the tests), and any file of a package the lockfile
 * installs only for the devDependencies, or does not know at all. Each with the reason.
 */
const devOnlyInputs = (inputs: string[], packages: LockPackages): string[] =>
  inputs.flatMap((input) => {
    const at = input.lastIndexOf('node_modules/');
    if (at < 0) return [];
    if (input.includes('node_modules/@cloud-copilot/')) return [`${input} (the AGPL-3.0 IAM evaluator, tests only)`];
    const [scope, name] = input.slice(at + 'node_modules/'.length).split('/');
    const installed = `${input.slice(0, at)}node_modules/${scope!.startsWith('@') ? `${scope}/${name}` : scope}`;
    const entry = packages[installed];
    if (!entry) return [`${input} (${installed} is not in package-lock.json)`];
    return entry.dev ? [`${input} (${installed} is installed only for devDependencies)`] : [];
  });

const asArray = <T>(value: T | T[]): T[] => (Array.isArray(value) ? value : [value]);

/** A condition osls writes with literals only (`!Not [!Equals ["<callers parameter>", ""]]`), evaluated. */
const holds = (template: PackagedStage['template'], name: string): boolean => {
  const evaluate = (c: Json): boolean => {
    if (Array.isArray(c['Fn::Not'])) return !evaluate(c['Fn::Not'][0] as Json);
    const equals = c['Fn::Equals'];
    if (Array.isArray(equals) && equals.every((v) => typeof v === 'string')) return equals[0] === equals[1];
    throw new Error(`condition ${name} is not made of literals: ${JSON.stringify(c)}`);
  };
  return evaluate(template.Conditions?.[name] as Json);
};

/**
 * The statements of the function roles' policies (of one role, if named) as the stage deploys them: a statement
 * written `!If [Condition, statement, !Ref AWS::NoValue]` (infra/iam.yml, the callers parameter's) only when its
 * condition holds.
 */
const statementsOf = (template: PackagedStage['template'], roleName?: string): Statement[] =>
  Object.entries(template.Resources)
    .filter(([name, r]) => r.Type === 'AWS::IAM::Role' && (roleName === undefined || name === roleName))
    .flatMap(([, role]) =>
      ((role.Properties.Policies ?? []) as { PolicyDocument: { Statement: Json[] } }[]).flatMap((p) =>
        p.PolicyDocument.Statement.flatMap((s) => {
          const choice = s['Fn::If'] as [string, Statement, Json] | undefined;
          if (!choice) return [s as unknown as Statement];
          expect(choice[2]).toEqual({ Ref: 'AWS::NoValue' });
          return holds(template, choice[0]) ? [choice[1]] : [];
        }),
      ),
    );

const environmentOf = (template: PackagedStage['template'], fn = 'TokenLambdaFunction'): Record<string, string> =>
  (template.Resources[fn]!.Properties.Environment as { Variables: Record<string, string> }).Variables;

/** The EMF line the broker's Metrics writes for one count of `name` in function `fn` (Powertools, on stdout). */
const emfOf = (
  name: MetricName,
  fn: string,
): {
  _aws: { CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string }[] }[] };
} & Json => {
  const lines = captureLogLines([]);
  try {
    const metrics = new Metrics(new EmfWriter(fn));
    metrics.count(name);
    metrics.flush(Date.now());
  } finally {
    stopCapturing(lines);
  }
  expect(lines).toHaveLength(1);
  return JSON.parse(lines[0]!);
};

/** Checks that the code's EMF for `name` in `fn` is the metric CloudWatch will have: namespace, name, dimension. */
const expectEmitted = (namespace: string, name: string, dimensions: Json, where: string) => {
  expect(namespace, where).toBe(METRICS_NAMESPACE);
  const [family] = name.split('.');
  const listed =
    (METRIC_NAMES as readonly string[]).includes(name) ||
    (name.includes('.') && (METRIC_FAMILIES as readonly string[]).includes(family!));
  expect(listed, `${where}: ${name} is not a metric the code emits (functions/lib/shared/metrics.ts)`).toBe(true);
  expect(Object.keys(dimensions), where).toEqual([METRICS_DIMENSION]);
  const fn = dimensions[METRICS_DIMENSION] as string;
  const emf = emfOf(name as MetricName, fn);
  const [directive] = emf._aws.CloudWatchMetrics;
  expect(directive!.Namespace, where).toBe(namespace);
  expect(directive!.Dimensions, where).toEqual([[METRICS_DIMENSION]]);
  expect(
    directive!.Metrics.map((m) => m.Name),
    where,
  ).toContain(name);
  expect(emf[METRICS_DIMENSION], where).toBe(fn);
};

interface Widget {
  type: string;
  properties: { title?: string; metrics?: unknown[][]; alarms?: string[]; query?: string };
}
/** The dashboard's widgets, with the Fn::Sub placeholders filled in (region, alarm logical ids for their ARNs). */
const dashboardWidgets = (dashboard: Resource): Widget[] => {
  const body = (dashboard.Properties.DashboardBody as { 'Fn::Sub': string })['Fn::Sub'];
  const filled = body.replace(/\$\{AWS::Region\}/g, 'eu-west-1').replace(/\$\{(\w+)\.Arn\}/g, 'arn-of:$1');
  expect(filled).not.toContain('${');
  return (JSON.parse(filled) as { widgets: Widget[] }).widgets;
};

/** The IAM condition keys on the broker's KMS encryption context (token-cipher.ts), for the stack's own table. */
const encryptionContextCondition = (): Json =>
  Object.fromEntries(
    Object.entries(encryptionContextFor('<table>')).map(([k, v]) => [
      `kms:EncryptionContext:${k}`,
      v === '<table>' ? { Ref: 'TokenTable' } : v,
    ]),
  );

/** The IAM condition holding the context to exactly the keys of the broker's (no extra key). */
const encryptionContextKeysCondition = (): Json => ({
  'kms:EncryptionContextKeys': Object.keys(encryptionContextFor('<table>')),
});

/** The ci stage's template as packaged below (callersParameter none), kept for the comparisons after it. */
let ciTemplate: PackagedStage['template'] | undefined;

describe('osls package --stage ci', () => {
  let packaged: PackagedStage | undefined;
  let template: PackagedStage['template'];
  let zipNames: string[];
  let prewarmZipNames: string[];

  const resourcesOfType = (type: string): [string, Resource][] =>
    Object.entries(template.Resources).filter(([, r]) => r.Type === type);
  const tokenFunction = (): Resource => {
    const fn = template.Resources.TokenLambdaFunction;
    if (!fn) throw new Error('no TokenLambdaFunction in the template');
    return fn;
  };
  const roleStatements = (roleName?: string): Statement[] => statementsOf(template, roleName);

  beforeAll(async () => {
    packaged = await packageStage('ci');
    template = packaged.template;
    ciTemplate = template;
    const { dir, state } = packaged;
    // The state records where `osls deploy` will look for the zip (.serverless/); it is in the package dir now.
    const zipOf = async (fn: string) =>
      zipEntries(await readFile(join(dir, basename(state.service.functions[fn]!.package.artifact))));
    zipNames = await zipOf('token');
    prewarmZipNames = await zipOf('prewarm');
  }, 120_000);

  afterAll(async () => {
    await packaged?.remove();
  });

  it('points the token function at the bundled handler, both functions on nodejs24.x and arm64', () => {
    const { Properties: p } = tokenFunction();
    expect(p.Handler).toBe('dist/token/handler.handler');
    const functions = resourcesOfType('AWS::Lambda::Function').map(([id, fn]) => [
      id,
      fn.Properties.Runtime,
      fn.Properties.Architectures,
    ]);
    expect(functions.sort()).toEqual([
      ['PrewarmLambdaFunction', 'nodejs24.x', ['arm64']],
      ['TokenLambdaFunction', 'nodejs24.x', ['arm64']],
    ]);
  });

  it('passes the package-time configuration checks without a warning (infra/config-check.ts)', () => {
    expect(packaged!.output).toContain('Service packaged');
    expect(packaged!.output).not.toMatch(/^Warning:/m);
  });

  it("reserves the ci stage's tokenReservedConcurrency for the token function only (unset: config-check-package.test.ts)", () => {
    expect(tokenFunction().Properties.ReservedConcurrentExecutions).toBe(50);
    expect(template.Resources.PrewarmLambdaFunction!.Properties).not.toHaveProperty('ReservedConcurrentExecutions');
  });

  it('ships only the bundle and its CommonJS marker in the token zip', () => {
    expect([...zipNames].sort()).toEqual(['dist/token/handler.js', 'dist/token/package.json']);
    expect(zipNames.filter((n) => n.startsWith('functions/') || n.includes('node_modules/'))).toEqual([]);
  });

  it('bundles no input of a devDependency-only package, @cloud-copilot/ (AGPL-3.0) above all (dist/*/meta.json)', async () => {
    const { statSync } = await import('node:fs');
    const packages = (JSON.parse(await readFile(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: LockPackages })
      .packages;
    for (const fn of ['token', 'prewarm']) {
      const meta = JSON.parse(await readFile(join(ROOT, 'dist', fn, 'meta.json'), 'utf8')) as {
        inputs: Json;
        outputs: Record<string, { bytes: number }>;
      };
      // The metafile is the one of the bundle that ships: written by the same build.
      expect(meta.outputs[`dist/${fn}/handler.js`]?.bytes, fn).toBe(
        statSync(join(ROOT, 'dist', fn, 'handler.js')).size,
      );
      const inputs = Object.keys(meta.inputs);
      expect(inputs.filter((i) => i.includes('node_modules/')).length, fn).toBeGreaterThan(100);
      expect(devOnlyInputs(inputs, packages), fn).toEqual([]);
    }
  });

  it('would name an evaluator or other devDependency-only file in a bundle (the check above can fail)', async () => {
    const packages = (JSON.parse(await readFile(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: LockPackages })
      .packages;
    expect(packages['node_modules/esbuild']?.dev).toBe(true);
    expect(
      devOnlyInputs(
        [
          'functions/lib/broker/token-broker.ts',
          'node_modules/@aws-sdk/client-kms/dist-es/index.js',
          'node_modules/@cloud-copilot/iam-simulate/dist/esm/index.js',
          'node_modules/esbuild/lib/main.js',
          'node_modules/some-package-never-installed/index.js',
        ],
        packages,
      ),
    ).toEqual([
      'node_modules/@cloud-copilot/iam-simulate/dist/esm/index.js (the AGPL-3.0 IAM evaluator, tests only)',
      'node_modules/esbuild/lib/main.js (node_modules/esbuild is installed only for devDependencies)',
      'node_modules/some-package-never-installed/index.js (node_modules/some-package-never-installed is not in package-lock.json)',
    ]);
  });

  it('points the prewarm function at its own bundle, with the same environment as token', () => {
    const fn = template.Resources.PrewarmLambdaFunction!;
    expect(fn.Properties.Handler).toBe('dist/prewarm/handler.handler');
    expect([...prewarmZipNames].sort()).toEqual(['dist/prewarm/handler.js', 'dist/prewarm/package.json']);
    expect(fn.Properties.Environment).toEqual(tokenFunction().Properties.Environment);
  });

  it('runs prewarm on the configured schedule and lets EventBridge invoke nothing else', () => {
    const rules = resourcesOfType('AWS::Events::Rule');
    expect(rules).toHaveLength(1);
    const [, rule] = rules[0]!;
    expect(rule.Properties.ScheduleExpression).toBe('rate(5 minutes)');
    expect(JSON.stringify(rule.Properties.Targets)).toContain('PrewarmLambdaFunction');
    expect(JSON.stringify(rule.Properties.Targets)).not.toContain('TokenLambdaFunction');
    const eventPermissions = resourcesOfType('AWS::Lambda::Permission').filter(
      ([, p]) => p.Properties.Principal === 'events.amazonaws.com',
    );
    expect(eventPermissions.map(([, p]) => JSON.stringify(p.Properties.FunctionName))).toEqual([
      expect.stringContaining('PrewarmLambdaFunction'),
    ]);
  });

  it('configures prewarm sets the config loader accepts', async () => {
    const { loadConfig } = await import('../../functions/lib/config/load-config');
    const env = (tokenFunction().Properties.Environment as { Variables: Record<string, unknown> }).Variables;
    const config = loadConfig({ ...env, [ENV.tableName]: 'table', [ENV.kmsKeyId]: 'key' } as Record<string, string>);
    expect(config.clients.get('limitrail')!.prewarm).toEqual([
      ['limitrail.usage.write'],
      ['limitrail.usage.read', 'limitrail.usage.write'],
    ]);
  });

  it('keys the table on TABLE_PARTITION_KEY and expires items by TABLE_TTL_ATTRIBUTE', () => {
    const tables = resourcesOfType('AWS::DynamoDB::Table');
    expect(tables).toHaveLength(1);
    const [, table] = tables[0]!;
    expect(table.Properties.KeySchema).toEqual([{ AttributeName: TABLE_PARTITION_KEY, KeyType: 'HASH' }]);
    expect(table.Properties.AttributeDefinitions).toEqual([{ AttributeName: TABLE_PARTITION_KEY, AttributeType: 'S' }]);
    expect(table.Properties.TimeToLiveSpecification).toEqual({ AttributeName: TABLE_TTL_ATTRIBUTE, Enabled: true });
    expect(table.Properties.BillingMode).toBe('PAY_PER_REQUEST');
    expect(table.Properties.SSESpecification).toEqual({ SSEEnabled: true });
    expect(table.DeletionPolicy).toBe('Delete');
  });

  it('gives the function exactly the documented environment, with the table and key by reference', () => {
    const env = (tokenFunction().Properties.Environment as { Variables: Record<string, unknown> }).Variables;
    const names = Object.keys(env);
    const documented = new Set<string>(Object.values(ENV));
    expect(names.filter((n) => !documented.has(n))).toEqual([]);
    expect(names).toEqual(expect.arrayContaining([ENV.tableName, ENV.clients, ENV.kmsKeyId]));
    expect(env[ENV.tableName]).toEqual({ Ref: 'TokenTable' });
    expect(JSON.stringify(env[ENV.kmsKeyId])).toContain('TokenKmsKey');
    // A deployed stage never accepts a plain-http loopback token URL (the Lambda Runtime API listens there).
    expect(env[ENV.allowLoopbackTokenUrl]).toBe('false');
  });

  it('reads the callers from brokerCallers (callersParameter none): no SSM parameter, and no SSM permission', () => {
    const env = environmentOf(template);
    expect(JSON.parse(env[ENV.callers]!)).toHaveLength(4);
    expect(env[ENV.callersParameter]).toBe('');
    expect(resourcesOfType('AWS::SSM::Parameter')).toEqual([]);
    expect(holds(template, 'ReadsCallersParameter')).toBe(false);
    expect(roleStatements().filter((s) => asArray(s.Action).some((a) => a.startsWith('ssm:')))).toEqual([]);
  });

  it('configures only https token endpoints in BROKER_CLIENTS', () => {
    const env = (tokenFunction().Properties.Environment as { Variables: Record<string, string> }).Variables;
    const clients = JSON.parse(env[ENV.clients]!) as Record<string, { tokenUrl: string; secretId: string }>;
    expect(Object.keys(clients).length).toBeGreaterThan(0);
    for (const client of Object.values(clients)) expect(new URL(client.tokenUrl).protocol).toBe('https:');
  });

  it('gives each function its own role, with only its log group, the table, the secret and the key', () => {
    const roles = Object.fromEntries(resourcesOfType('AWS::IAM::Role'));
    expect(Object.keys(roles).sort()).toEqual(['PrewarmFunctionRole', 'TokenFunctionRole']);
    expect(tokenFunction().Properties.Role).toEqual({ 'Fn::GetAtt': ['TokenFunctionRole', 'Arn'] });
    expect(template.Resources.PrewarmLambdaFunction!.Properties.Role).toEqual({
      'Fn::GetAtt': ['PrewarmFunctionRole', 'Arn'],
    });
    for (const [name, fn] of [
      ['TokenFunctionRole', 'token'],
      ['PrewarmFunctionRole', 'prewarm'],
    ] as const) {
      const statements = roleStatements(name);
      const resources = statements.flatMap((s) => asArray(s.Resource)).map((r) => JSON.stringify(r));
      expect(resources).toEqual([
        JSON.stringify({
          'Fn::Sub': `arn:\${AWS::Partition}:logs:\${AWS::Region}:\${AWS::AccountId}:log-group:/aws/lambda/limitrail-token-broker-ci-${fn}:*`,
        }),
        JSON.stringify({ 'Fn::GetAtt': ['TokenTable', 'Arn'] }),
        expect.stringContaining('secretsmanager'),
        expect.stringContaining('"TokenKmsKey","Arn"'),
      ]);
    }
  });

  it('grants no wildcard action and no bare "*" resource to any function role', () => {
    const statements = roleStatements();
    expect(statements.length).toBeGreaterThan(0);
    for (const s of statements) {
      for (const action of asArray(s.Action)) expect(action, JSON.stringify(s)).not.toMatch(/\*/);
      for (const resource of asArray(s.Resource)) expect(resource, JSON.stringify(s)).not.toBe('*');
    }
  });

  it('lets the functions read exactly the secrets named in BROKER_CLIENTS, and nothing else', async () => {
    const env = (tokenFunction().Properties.Environment as { Variables: Record<string, string> }).Variables;
    const clients = JSON.parse(env[ENV.clients]!) as Record<string, { secretId: string }>;
    const secretStatements = roleStatements().filter((s) =>
      asArray(s.Action).some((a) => a.startsWith('secretsmanager:')),
    );
    expect([...new Set(secretStatements.flatMap((s) => asArray(s.Action)))]).toEqual(
      await actionsTheCodeCalls('secretsmanager'),
    );
    for (const statement of secretStatements) {
      // A name gets its exact ARN pattern; a secret given as an ARN is used as is.
      const [condition, asArn, byName] = (statement.Resource as { 'Fn::If': [string, string, { 'Fn::Sub': string }] })[
        'Fn::If'
      ];
      expect(condition).toBe('LimitrailSecretIsArn');
      const secretIds = Object.values(clients).map((c) => c.secretId);
      expect([asArn]).toEqual(secretIds);
      expect([byName['Fn::Sub']]).toEqual(
        secretIds.map(
          (id) => `arn:\${AWS::Partition}:secretsmanager:\${AWS::Region}:\${AWS::AccountId}:secret:${id}-??????`,
        ),
      );
    }
  });

  it("scopes table and key permissions to the stack's own table and key, with exactly the actions the code calls", async () => {
    const statements = roleStatements();
    const dynamo = statements.filter((s) => asArray(s.Action).some((a) => a.startsWith('dynamodb:')));
    expect(dynamo.flatMap((s) => asArray(s.Resource))).toEqual([
      { 'Fn::GetAtt': ['TokenTable', 'Arn'] },
      { 'Fn::GetAtt': ['TokenTable', 'Arn'] },
    ]);
    for (const s of dynamo) expect(asArray(s.Action).sort()).toEqual(await actionsTheCodeCalls('dynamodb'));
    const kms = statements.filter((s) => asArray(s.Action).some((a) => a.startsWith('kms:')));
    expect(kms).toHaveLength(2);
    // The signing key's actions are in their own policy (the next test); together they are what the code calls.
    const signing = ['kms:GetPublicKey', 'kms:Sign'];
    expect(await actionsTheCodeCalls('kms')).toEqual(['kms:Decrypt', 'kms:GenerateDataKey', ...signing]);
    for (const s of kms) {
      expect(asArray(s.Action).sort()).toEqual(['kms:Decrypt', 'kms:GenerateDataKey']);
      expect(JSON.stringify(s.Resource)).toContain('"TokenKmsKey","Arn"');
      expect(s.Condition).toEqual({
        StringEquals: encryptionContextCondition(),
        'ForAllValues:StringEquals': encryptionContextKeysCondition(),
      });
    }
  });

  it('lets both function roles, and nothing else, Sign with the signing key (ES256, RAW only) and read its public key', () => {
    const policies = resourcesOfType('AWS::IAM::Policy');
    expect(policies.map(([id]) => id)).toEqual(['UpstreamSigningKeyUse']);
    const [, policy] = policies[0]!;
    expect(policy.Properties.Roles).toEqual([{ Ref: 'TokenFunctionRole' }, { Ref: 'PrewarmFunctionRole' }]);
    const key = [{ 'Fn::GetAtt': ['UpstreamSigningKey', 'Arn'] }];
    expect((policy.Properties.PolicyDocument as { Statement: Statement[] }).Statement).toEqual([
      {
        Sid: 'UpstreamSigningKeySign',
        Effect: 'Allow',
        Action: 'kms:Sign',
        Resource: key,
        Condition: { StringEquals: { 'kms:SigningAlgorithm': 'ECDSA_SHA_256', 'kms:MessageType': 'RAW' } },
      },
      { Sid: 'UpstreamSigningKeyPublicKey', Effect: 'Allow', Action: 'kms:GetPublicKey', Resource: key },
    ]);
  });

  it("creates the ci stage's signing key (SIGN_VERIFY, P-256) with a policy as strict as the token key's", () => {
    const { UpstreamSigningKey: key, UpstreamSigningKeyAlias: alias } = template.Resources;
    expect(key!.Properties).toMatchObject({
      KeyUsage: 'SIGN_VERIFY',
      KeySpec: 'ECC_NIST_P256',
      PendingWindowInDays: 30,
    });
    expect(key!.Properties).not.toHaveProperty('EnableKeyRotation'); // KMS rotates no asymmetric key
    expect(alias!.Properties).toEqual({
      AliasName: 'alias/limitrail-token-broker-ci-upstream-signing',
      TargetKeyId: { Ref: 'UpstreamSigningKey' },
    });
    const statements = (key!.Properties.KeyPolicy as { Statement: Statement[] }).Statement;
    const accountRoot = { AWS: { 'Fn::Sub': 'arn:${AWS::Partition}:iam::${AWS::AccountId}:root' } };
    for (const s of statements) expect(s).toMatchObject({ Effect: 'Allow', Principal: accountRoot, Resource: '*' });
    const actions = statements.flatMap((s) => asArray(s.Action));
    for (const action of actions) expect(action).toMatch(/^kms:[A-Za-z]+$/);
    expect(actions).not.toContain('kms:CreateGrant');
    expect(statements.filter((s) => asArray(s.Action).includes('kms:PutKeyPolicy'))).toEqual([
      expect.objectContaining({
        Condition: { ArnEquals: { 'aws:PrincipalArn': 'arn:aws:iam::111111111111:role/platform-deploy' } },
      }),
    ]);
    const signers = statements.filter((s) => asArray(s.Action).includes('kms:Sign'));
    expect(signers.map((s) => [s.Sid, s.Action])).toEqual([['BrokerFunctionsSign', 'kms:Sign']]);
    const roleNames = resourcesOfType('AWS::IAM::Role').map(([, role]) => role.Properties.RoleName as string);
    const condition = signers[0]!.Condition as {
      ArnEquals: Record<string, { 'Fn::Sub': string }[]>;
      StringEquals: Json;
    };
    expect(condition.ArnEquals['aws:PrincipalArn']!.map((a) => a['Fn::Sub'].split(':role/')[1]).sort()).toEqual(
      roleNames.sort(),
    );
    expect(condition.StringEquals).toEqual({ 'kms:SigningAlgorithm': 'ECDSA_SHA_256', 'kms:MessageType': 'RAW' });
    // Nothing else uses the key; reading its public key is left to IAM (the roles, whoever runs npm run jwks).
    const uses =
      /^kms:(Decrypt|Encrypt|ReEncrypt|GenerateDataKey|GenerateMac|VerifyMac|Sign|Verify|DeriveSharedSecret)/;
    expect(statements.filter((s) => asArray(s.Action).some((a) => uses.test(a))).map((s) => s.Sid)).toEqual([
      'BrokerFunctionsSign',
    ]);
    expect(statements.find((s) => s.Sid === 'PublicKeyForJwks')).toMatchObject({ Action: 'kms:GetPublicKey' });
  });

  it("creates a key whose policy lets only the two function roles use it, with the broker's encryption context", () => {
    const keys = resourcesOfType('AWS::KMS::Key').filter(([id]) => id === 'TokenKmsKey');
    expect(resourcesOfType('AWS::KMS::Key').map(([id]) => id)).toEqual(['TokenKmsKey', 'UpstreamSigningKey']);
    const [, key] = keys[0]!;
    const roleNames = resourcesOfType('AWS::IAM::Role').map(([, role]) => role.Properties.RoleName as string);
    const statements = (key.Properties.KeyPolicy as { Statement: Statement[] }).Statement;
    const users = statements.filter((s) =>
      asArray(s.Action).some((a) => a === 'kms:Decrypt' || a === 'kms:GenerateDataKey'),
    );
    expect(users).toHaveLength(1);
    const condition = users[0]!.Condition as {
      ArnEquals: Record<string, { 'Fn::Sub': string }[]>;
      StringEquals: Json;
      'ForAllValues:StringEquals': Json;
    };
    expect(condition.ArnEquals['aws:PrincipalArn']!.map((a) => a['Fn::Sub'].split(':role/')[1]).sort()).toEqual(
      roleNames.sort(),
    );
    expect(condition.StringEquals).toEqual(encryptionContextCondition());
    expect(condition['ForAllValues:StringEquals']).toEqual(encryptionContextKeysCondition());
    for (const s of statements) {
      expect(JSON.stringify(s.Principal)).not.toBe('"*"');
      for (const action of asArray(s.Action)) expect(action).not.toMatch(/^\*$|^kms:\*$/);
    }
  });

  it('lets no administrator hand itself the key: named actions, no grants, one statement for key policy changes', () => {
    const key = template.Resources.TokenKmsKey!;
    const statements = (key.Properties.KeyPolicy as { Statement: Statement[] }).Statement;
    const accountRoot = { AWS: { 'Fn::Sub': 'arn:${AWS::Partition}:iam::${AWS::AccountId}:root' } };
    const actions = statements.flatMap((s) => asArray(s.Action));
    // Named actions: kms:Create* would include kms:CreateGrant, kms:Put* kms:PutKeyPolicy.
    for (const action of actions) expect(action).toMatch(/^kms:[A-Za-z]+$/);
    expect(actions).not.toContain('kms:CreateGrant');
    // Only the functions' statement (checked above) uses the key.
    const uses =
      /^kms:(Decrypt|Encrypt|ReEncrypt|GenerateDataKey|GenerateMac|VerifyMac|Sign|Verify|DeriveSharedSecret)/;
    expect(statements.filter((s) => asArray(s.Action).some((a) => uses.test(a))).map((s) => s.Sid)).toEqual([
      'BrokerFunctionsUseKey',
    ]);
    // Key policy changes: one statement, the account root (AWS's lockout safety check needs whoever deploys to be
    // allowed), held to the deploy role when the stage names one; no Deny anywhere that could lock it out.
    const policyChanges = statements.filter((s) => asArray(s.Action).includes('kms:PutKeyPolicy'));
    expect(policyChanges).toHaveLength(1);
    expect(policyChanges[0]).toMatchObject({
      Effect: 'Allow',
      Action: 'kms:PutKeyPolicy',
      Principal: accountRoot,
      Resource: '*',
    });
    // The ci stage names its deploy role (serverless.yml tokenKeyAdminRoleArn): only that role may change the policy.
    const deployRole = 'arn:aws:iam::111111111111:role/platform-deploy';
    expect(policyChanges[0]!.Condition).toEqual({
      'Fn::If': ['TokenKeyAdminRoleGiven', { ArnEquals: { 'aws:PrincipalArn': deployRole } }, { Ref: 'AWS::NoValue' }],
    });
    expect(template.Conditions!.TokenKeyAdminRoleGiven).toEqual({ 'Fn::Not': [{ 'Fn::Equals': [deployRole, ''] }] });
    for (const s of statements) expect(s).toMatchObject({ Effect: 'Allow', Principal: accountRoot });
  });

  it('serves the token function on a Function URL with AuthType AWS_IAM', () => {
    const urls = resourcesOfType('AWS::Lambda::Url');
    expect(urls).toHaveLength(1);
    expect(urls[0]![1].Properties).toEqual({
      AuthType: 'AWS_IAM',
      TargetFunctionArn: { 'Fn::GetAtt': ['TokenLambdaFunction', 'Arn'] },
    });
  });

  it('lets exactly the configured principals invoke the token function, directly or through its URL', () => {
    const permissions = resourcesOfType('AWS::Lambda::Permission')
      .map(([, p]) => p.Properties)
      .filter((p) => JSON.stringify(p.FunctionName).includes('TokenLambdaFunction'));
    const who = (p: Json) => (p.PrincipalOrgID as string | undefined) ?? (p.Principal as string);
    const direct = permissions.filter(
      (p) => p.Action === 'lambda:InvokeFunction' && p.InvokedViaFunctionUrl === undefined,
    );
    const viaUrl = permissions.filter(
      (p) => p.Action === 'lambda:InvokeFunction' && p.InvokedViaFunctionUrl !== undefined,
    );
    const url = permissions.filter((p) => p.Action === 'lambda:InvokeFunctionUrl');
    expect(permissions.length).toBe(direct.length + viaUrl.length + url.length);
    // The ci stage's invokePrincipals (serverless.yml).
    const invokePrincipals = [
      'arn:aws:iam::111111111111:role/billing-service',
      'arn:aws:iam::333333333333:role/usage-exporter',
    ];
    expect(direct.map(who).sort()).toEqual(invokePrincipals);
    // The principals of the BROKER_CALLERS grants the function gets, each once with each of the two
    // permissions AWS requires for a Function URL call.
    const env = (tokenFunction().Properties.Environment as { Variables: Record<string, string> }).Variables;
    const granted = [
      ...new Set((JSON.parse(env[ENV.callers]!) as { principal: string }[]).map((g) => g.principal)),
    ].sort();
    expect(granted.length).toBeGreaterThan(0);
    expect(url.map(who).sort()).toEqual(granted);
    expect(viaUrl.map(who).sort()).toEqual(granted);
    for (const p of url) expect(p.FunctionUrlAuthType).toBe('AWS_IAM');
    for (const p of viaUrl) expect(p.InvokedViaFunctionUrl).toBe(true);
    // A grantee that may only use the URL cannot invoke directly (and so skip AWS's URL authentication).
    const urlOnly = granted.filter((principal) => !invokePrincipals.includes(principal));
    expect(urlOnly.length).toBeGreaterThan(0);
    for (const principal of urlOnly) expect(direct.map(who)).not.toContain(principal);
  });

  it('runs the ci stage in grants mode with account and principal grants only, no organization grant', () => {
    const env = (tokenFunction().Properties.Environment as { Variables: Record<string, string> }).Variables;
    expect(env[ENV.callerAuth]).toBe('grants');
    const principals = (JSON.parse(env[ENV.callers]!) as { principal: string }[]).map((g) => g.principal);
    expect(principals.length).toBeGreaterThan(0);
    expect(principals.filter((p) => p.startsWith('o-'))).toEqual([]);
  });

  it("binds identity proofs to the token function's own name by default", () => {
    const env = (tokenFunction().Properties.Environment as { Variables: Record<string, string> }).Variables;
    expect(env[ENV.callerProofAudience]).toBe('limitrail-token-broker-ci-token');
    expect(env[ENV.callerProofAudience]).toBe(tokenFunction().Properties.FunctionName);
  });

  it('alarms on errors, throttles and duration of both functions, and on upstream failures, stale answers, suspected rollbacks and a callers parameter not applied', () => {
    const alarms = resourcesOfType('AWS::CloudWatch::Alarm').map(([, a]) => a.Properties);
    const watched = alarms.map(
      (a) => `${a.Namespace as string}/${a.MetricName as string}/${JSON.stringify(a.Dimensions)}`,
    );
    for (const fn of ['token', 'prewarm']) {
      for (const metric of ['Errors', 'Throttles', 'Duration']) {
        expect(watched).toContain(
          `AWS/Lambda/${metric}/${JSON.stringify([{ Name: 'FunctionName', Value: `limitrail-token-broker-ci-${fn}` }])}`,
        );
      }
    }
    const own = alarms.filter((a) => a.Namespace === 'LimitrailTokenBroker').map((a) => a.MetricName);
    expect(own.sort()).toEqual([
      'CallersParameterInvalid',
      'CallersStale',
      'RetriesExhausted',
      'RollbackSuspected',
      'StaleAnswers',
    ]);
    // Every alarm on the broker's own metrics watches one the code emits, with the dimensions its EMF lines carry.
    const functionNames = ['limitrail-token-broker-ci-token', 'limitrail-token-broker-ci-prewarm'];
    for (const a of alarms.filter((alarm) => alarm.Namespace !== 'AWS/Lambda')) {
      const dimensions = Object.fromEntries(
        (a.Dimensions as { Name: string; Value: string }[]).map((d) => [d.Name, d.Value]),
      );
      expect(functionNames).toContain(dimensions[METRICS_DIMENSION]);
      expectEmitted(a.Namespace as string, a.MetricName as string, dimensions, `alarm ${a.AlarmDescription as string}`);
    }
    const duration = alarms.find((a) => a.MetricName === 'Duration')!;
    expect(duration.Threshold).toBeLessThan((tokenFunction().Properties.Timeout as number) * 1000);
    for (const a of alarms)
      expect(JSON.stringify(a.AlarmActions)).toContain('arn:aws:sns:eu-west-1:111111111111:platform-alarms');
  });

  it('has one dashboard for the stage, with a widget for each thing the runbook looks at', () => {
    const dashboards = resourcesOfType('AWS::CloudWatch::Dashboard');
    expect(dashboards).toHaveLength(1);
    const [, dashboard] = dashboards[0]!;
    expect(dashboard.Properties.DashboardName).toBe('limitrail-token-broker-ci');
    const titles = dashboardWidgets(dashboard).map((w) => w.properties.title);
    expect(titles).toEqual(
      expect.arrayContaining([
        'Alarms',
        'Hits by layer',
        'Endpoint fetches and upstream requests',
        'Upstream latency',
        'Upstream errors by kind',
        'Client assertions (private_key_jwt)',
        'Lease waits',
        'Stale answers and degraded paths',
        'Refusals',
        'Refusals by reason',
        'Identity verifications',
        'Callers parameter',
        'Unusable items and rollbacks',
        'Function errors',
        'Function throttles',
        'Function duration',
      ]),
    );
  });

  it('shows every alarm of the stack on the dashboard', () => {
    const widgets = dashboardWidgets(resourcesOfType('AWS::CloudWatch::Dashboard')[0]![1]);
    const shown = widgets.filter((w) => w.type === 'alarm').flatMap((w) => w.properties.alarms ?? []);
    expect(shown.sort()).toEqual(
      resourcesOfType('AWS::CloudWatch::Alarm')
        .map(([id]) => `arn-of:${id}`)
        .sort(),
    );
  });

  it("plots only metrics the code emits, with the dimensions its EMF lines carry, and the functions' own", () => {
    const functionNames = ['limitrail-token-broker-ci-token', 'limitrail-token-broker-ci-prewarm'];
    const widgets = dashboardWidgets(resourcesOfType('AWS::CloudWatch::Dashboard')[0]![1]);
    const plotted = new Set<string>();
    for (const widget of widgets.filter((w) => w.type === 'metric')) {
      const where = `widget "${widget.properties.title}"`;
      expect(widget.properties.metrics?.length, where).toBeGreaterThan(0);
      for (const entry of widget.properties.metrics!) {
        // CloudWatch's dashboard body: every entry is an array; a metric expression is a one-element array.
        expect(Array.isArray(entry), `${where}: ${JSON.stringify(entry)} is not an array`).toBe(true);
        if (entry.length === 1 && typeof entry[0] === 'object' && entry[0] !== null && 'expression' in entry[0]) {
          const { expression } = entry[0] as { expression: string };
          // A search for every <family>.<reason> metric of one function, without the family's total.
          const search =
            /^SEARCH\('\{(\w+),(\w+)\} FunctionName="([\w-]+)" MetricName=(\w+) NOT MetricName="(\w+)"', 'Sum', 300\)$/.exec(
              expression,
            );
          expect(search, `${where}: ${expression}`).not.toBeNull();
          const [, namespace, dimension, fn, familyName, total] = search!;
          expect(functionNames, where).toContain(fn);
          expect(total, where).toBe(`${familyName}s`);
          expectEmitted(namespace!, total!, { [dimension!]: fn }, where);
          expectEmitted(namespace!, `${familyName}.some_reason`, { [dimension!]: fn }, where);
          plotted.add(`${familyName}.*`);
          continue;
        }
        const [namespace, name, dimension, fn, ...rest] = entry as string[];
        expect(
          rest.every((r) => typeof r === 'object'),
          `${where}: ${JSON.stringify(entry)} has one dimension`,
        ).toBe(true);
        expect(functionNames, where).toContain(fn);
        if (namespace === 'AWS/Lambda') expect(['Errors', 'Throttles', 'Duration'], where).toContain(name);
        else expectEmitted(namespace!, name!, { [dimension!]: fn }, where);
        plotted.add(name!);
      }
    }
    expect([...plotted]).toEqual(
      expect.arrayContaining([
        'MemoryHits',
        'TableHits',
        'EndpointFetches',
        'UpstreamRequests',
        'UpstreamLatency',
        'UpstreamErrors',
        'UpstreamError.*',
      ]),
    );
    expect([...plotted]).toEqual(
      expect.arrayContaining([
        'LeaseWaits',
        'StaleAnswers',
        'Refusals',
        'IdentityVerifications',
        'IdentityCacheHits',
        'IdentityFailures',
      ]),
    );
    expect([...plotted]).toEqual(expect.arrayContaining(['UnusableItems', 'Errors', 'Throttles', 'Duration']));
    // Logs Insights widgets read the functions' own log groups.
    for (const widget of widgets.filter((w) => w.type === 'log')) {
      expect(widget.properties.query).toMatch(/^SOURCE '\/aws\/lambda\/limitrail-token-broker-ci-(token|prewarm)' \| /);
    }
  });

  it('keeps function logs for a limited time', () => {
    const logGroups = resourcesOfType('AWS::Logs::LogGroup');
    expect(logGroups.length).toBeGreaterThan(0);
    for (const [, group] of logGroups) expect(group.Properties.RetentionInDays).toBeGreaterThan(0);
  });
});

/** The ci stage with its callers in an SSM parameter (callersParameter): one the stack creates, one it names. */
describe('osls package --stage ci with a callers parameter', () => {
  const REVOKED = 'arn:aws:sts::111111111111:assumed-role/reporting/stolen-session';
  let created: PackagedStage;
  let existing: PackagedStage;
  const ssmStatements = (t: PackagedStage['template'], role: string) =>
    statementsOf(t, role).filter((s) => asArray(s.Action).some((a) => a.startsWith('ssm:')));
  const urlPermissions = (t: PackagedStage['template']) =>
    Object.entries(t.Resources)
      .filter(([, r]) => r.Type === 'AWS::Lambda::Permission')
      .map(([id]) => id)
      .sort();

  beforeAll(async () => {
    created = await packageStage('ci', {
      callersParameter: 'create',
      revokedCallers: JSON.stringify([REVOKED]),
      callersMaxAgeSec: '30',
    });
    existing = await packageStage('ci', { callersParameter: '/platform/limitrail-broker/callers' });
  }, 240_000);

  afterAll(async () => {
    await Promise.all([created?.remove(), existing?.remove()]);
  });

  it('create: a String parameter holding brokerCallers and revokedCallers, which the token function reads', () => {
    const parameters = Object.values(created.template.Resources).filter((r) => r.Type === 'AWS::SSM::Parameter');
    expect(parameters).toHaveLength(1);
    const { Name, Type, Tier, Value } = parameters[0]!.Properties as Record<string, string>;
    expect([Name, Type, Tier]).toEqual(['/limitrail-token-broker/ci/callers', 'String', 'Standard']);
    const none = environmentOf(ciTemplate!);
    expect(JSON.parse(Value!)).toEqual({ callers: JSON.parse(none[ENV.callers]!), revoked: [REVOKED] });
    const env = environmentOf(created.template);
    expect([env[ENV.callers], env[ENV.callersParameter], env[ENV.callersMaxAgeSec]]).toEqual([
      '',
      '/limitrail-token-broker/ci/callers',
      '30',
    ]);
    expect(environmentOf(created.template, 'PrewarmLambdaFunction')[ENV.callersParameter]).toBe(Name);
  });

  it('create: the token role may ssm:GetParameter on that parameter only; the prewarm role on none', () => {
    expect(ssmStatements(created.template, 'TokenFunctionRole')).toEqual([
      {
        Sid: 'CallersParameter',
        Effect: 'Allow',
        Action: 'ssm:GetParameter',
        Resource: {
          'Fn::Sub':
            'arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/limitrail-token-broker/ci/callers',
        },
      },
    ]);
    expect(ssmStatements(created.template, 'PrewarmFunctionRole')).toEqual([]);
  });

  it('create: checks brokerCallers as the first value (no warning), and keeps its Function URL permissions', () => {
    expect(created.output).toContain('Service packaged');
    expect(created.output).not.toMatch(/^Warning:/m);
    expect(urlPermissions(created.template)).toEqual(urlPermissions(ciTemplate!));
  });

  it('an existing parameter: read by name, not created, and the package-time checks say they cannot see it', () => {
    expect(Object.values(existing.template.Resources).filter((r) => r.Type === 'AWS::SSM::Parameter')).toEqual([]);
    const env = environmentOf(existing.template);
    expect([env[ENV.callers], env[ENV.callersParameter], env[ENV.callersMaxAgeSec]]).toEqual([
      '',
      '/platform/limitrail-broker/callers',
      '60',
    ]);
    expect(ssmStatements(existing.template, 'TokenFunctionRole').map((s) => s.Resource)).toEqual([
      {
        'Fn::Sub':
          'arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/platform/limitrail-broker/callers',
      },
    ]);
    expect(existing.output).toContain(
      'Warning: the callers come from the SSM parameter /platform/limitrail-broker/callers (BROKER_CALLERS_PARAMETER) at run time',
    );
  });
});

/** infra/runtime.cjs through osls: what it refuses fails `osls package` before anything is packaged (about 1 s each). */
describe('osls package with a runtime or architecture the broker does not support', () => {
  const refusal = async (params: Record<string, string>): Promise<string> => {
    const packaged = await packageStage('ci', params).catch((err: Error) => err);
    if (!(packaged instanceof Error)) {
      await packaged.remove();
      throw new Error(`osls packaged the ci stage with ${JSON.stringify(params)}`);
    }
    return packaged.message;
  };

  it('refuses a runtime other than nodejs22.x and nodejs24.x', async () => {
    expect(await refusal({ runtime: 'nodejs20.x' })).toContain(
      'Cannot resolve variable at "provider.runtime": Cannot resolve "runtime" out of "runtime.cjs": Received rejection: Error: parameter runtime "nodejs20.x" must be one of nodejs22.x, nodejs24.x',
    );
  });

  it('refuses an architecture other than arm64 and x86_64', async () => {
    expect(await refusal({ architecture: 'aarch64' })).toContain(
      'parameter architecture "aarch64" must be one of arm64, x86_64',
    );
  });

  it('refuses nodejs22.x with bundles built for Node 24, saying how to build for it', async () => {
    expect(await refusal({ runtime: 'nodejs22.x' })).toMatch(
      /dist\/(token|prewarm) was built for nodejs24\.x, newer than the stage's runtime nodejs22\.x: run `npm run build -- --runtime nodejs22\.x`/,
    );
  });
});

/** infra/callers-parameter.cjs on its own, with stage parameters other than the ci stage's (no osls run needed). */
describe('infra/callers-parameter.cjs', () => {
  type Resolver = (ctx: { resolveVariable: (name: string) => Promise<string> }) => Promise<unknown>;
  const resolver = createRequire(import.meta.url)('../../infra/callers-parameter.cjs') as Record<string, Resolver>;
  const render = (property: string, params: Record<string, string>) =>
    resolver[property]!({
      resolveVariable: async (name) => {
        const value = {
          'self:service': 'limitrail-token-broker',
          'sls:stage': 'ci',
          'param:brokerCallers': '[]',
          'param:revokedCallers': '[]',
          ...Object.fromEntries(Object.entries(params).map(([k, v]) => [`param:${k}`, v])),
        }[name];
        if (value === undefined) throw new Error(`unexpected variable ${name}`);
        return value;
      },
    });

  it('passes brokerCallers through only without a parameter, and names the parameter with a leading / in the ARN', async () => {
    expect(await render('brokerCallers', { callersParameter: 'none', brokerCallers: '[1]' })).toBe('[1]');
    expect(await render('brokerCallers', { callersParameter: 'create', brokerCallers: '[1]' })).toBe('');
    expect(await render('callersParameter', { callersParameter: 'none' })).toBe('');
    expect(await render('parameterPath', { callersParameter: 'broker-callers' })).toBe('/broker-callers');
  });

  it.each([
    ['a name with a space', '/platform/broker callers'],
    ['a name AWS reserves', '/aws/reference/x'],
    ['a wildcard', '/platform/*'],
  ])('refuses %s as callersParameter', async (_name, value) => {
    await expect(render('callersParameter', { callersParameter: value })).rejects.toThrow(
      /must be none, create or the name of an SSM parameter/,
    );
  });

  it('refuses a created parameter over 4 KB or with revokedCallers not a list of ARNs', async () => {
    const big = JSON.stringify(
      Array.from({ length: 60 }, (_, i) => ({
        principal: `arn:aws:iam::111111111111:role/caller-${i}`,
        client: 'limitrail',
        scopes: ['limitrail.usage.read'],
      })),
    );
    await expect(render('resources', { callersParameter: 'create', brokerCallers: big })).rejects.toThrow(
      /more than a Standard SSM parameter's 4096: create an Advanced parameter yourself/,
    );
    await expect(render('resources', { callersParameter: 'create', revokedCallers: '"x"' })).rejects.toThrow(
      'parameter revokedCallers must be a JSON array of ARNs',
    );
    expect(await render('resources', { callersParameter: '/platform/x' })).toEqual({ Resources: {} });
  });
});

/** infra/caller-access.cjs on its own, with stage parameters other than the ci stage's (no osls run needed). */
describe('infra/caller-access.cjs', () => {
  type CallerAccess = (ctx: {
    resolveVariable: (name: string) => Promise<string>;
  }) => Promise<{ Resources: Record<string, Resource> }>;
  const callerAccess = createRequire(import.meta.url)('../../infra/caller-access.cjs') as CallerAccess;
  const render = (params: Record<string, string>) =>
    callerAccess({
      resolveVariable: async (name) => {
        const value = { callerAuth: 'grants', invokePrincipals: '[]', brokerCallers: '[]', ...params }[
          name.replace(/^param:/, '')
        ];
        if (value === undefined) throw new Error(`unexpected variable ${name}`);
        return value;
      },
    });
  const orgGrant = '[{"principal":"o-a1b2c3d4e5","client":"limitrail","scopes":["limitrail.accounts.read"]}]';

  it('fails the packaging on an organization grant in grants mode, saying to grant accounts instead', async () => {
    await expect(render({ brokerCallers: orgGrant })).rejects.toThrow(
      /"o-a1b2c3d4e5" is an organization id.*grant the account ids instead/,
    );
  });

  it('grants an organization both Function URL permissions by PrincipalOrgID in invoke-permission mode', async () => {
    const { Resources } = await render({ callerAuth: 'invoke-permission', brokerCallers: orgGrant });
    const permissions = Object.values(Resources).map((r) => r.Properties);
    const common = {
      FunctionName: { 'Fn::GetAtt': ['TokenLambdaFunction', 'Arn'] },
      Principal: '*',
      PrincipalOrgID: 'o-a1b2c3d4e5',
    };
    expect(permissions.sort((a, b) => String(a.Action).localeCompare(String(b.Action)))).toEqual([
      { Action: 'lambda:InvokeFunction', InvokedViaFunctionUrl: true, ...common },
      { Action: 'lambda:InvokeFunctionUrl', FunctionUrlAuthType: 'AWS_IAM', ...common },
    ]);
  });

  it('refuses a callerAuth mode the broker does not know', async () => {
    await expect(render({ callerAuth: 'grant' })).rejects.toThrow(
      'parameter callerAuth "grant" must be one of grants, invoke-permission',
    );
  });

  it('names each permission after its principal and kind, the same on every run', async () => {
    const params = {
      invokePrincipals: '["arn:aws:iam::111111111111:role/billing-service"]',
      brokerCallers:
        '[{"principal":"arn:aws:iam::111111111111:role/billing-service","client":"limitrail","scopes":["limitrail.usage.read"]}]',
    };
    const first = Object.keys((await render(params)).Resources);
    expect(first).toHaveLength(3);
    expect(new Set(first).size).toBe(3);
    expect(Object.keys((await render(params)).Resources)).toEqual(first);
  });
});
