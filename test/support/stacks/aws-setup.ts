/**
 * Creates in moto what the stack creates in AWS: the token table (as infra/table.yml defines it),
 * the upstream client's secret and a symmetric KMS key; and, for private_key_jwt clients, signing keys. Set-up code for `npm start` and integration
 * tests, never part of the broker: it takes the endpoint explicitly instead of from AWS_ENDPOINT_URL.
 * Safe to run again: what exists is reused (the secret's value is updated).
 */

import { setTimeout as sleep } from 'node:timers/promises';
import {
  CreateTableCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  DynamoDBClient,
  ResourceInUseException,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';
import {
  CreateAliasCommand,
  CreateKeyCommand,
  DescribeKeyCommand,
  KMSClient,
  NotFoundException,
} from '@aws-sdk/client-kms';
import {
  CreateSecretCommand,
  PutSecretValueCommand,
  ResourceExistsException,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';

import { TABLE_PARTITION_KEY, TABLE_TTL_ATTRIBUTE } from '../../../functions/lib/cache/table/table-schema';

export interface LocalAwsOptions {
  /** moto (or any AWS-compatible) endpoint, e.g. http://127.0.0.1:PORT. */
  endpoint: string;
  region: string;
  tableName: string;
  secretId: string;
  secretValue: { client_id: string; client_secret: string };
  /** Alias that finds the key again on a second run. Default: alias/<tableName>. */
  kmsKeyAlias?: string;
  /** Default: the standard env credentials, or dummy ones (moto accepts any) when none are set. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
}

export interface LocalAws {
  tableName: string;
  secretArn: string;
  /** The key's ARN (valid wherever a KeyId is expected). */
  kmsKeyId: string;
}

const TAGS = [
  { Key: 'service', Value: 'limitrail-token-broker' },
  { Key: 'stage', Value: 'local' },
];

const dummyWhenUnset = (): LocalAwsOptions['credentials'] =>
  process.env.AWS_ACCESS_KEY_ID ? undefined : { accessKeyId: 'test', secretAccessKey: 'test' };

const ensureTable = async (dynamo: DynamoDBClient, tableName: string): Promise<void> => {
  try {
    await dynamo.send(
      new CreateTableCommand({
        TableName: tableName,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [{ AttributeName: TABLE_PARTITION_KEY, AttributeType: 'S' }],
        KeySchema: [{ AttributeName: TABLE_PARTITION_KEY, KeyType: 'HASH' }],
        SSESpecification: { Enabled: true },
        Tags: TAGS,
      }),
    );
  } catch (err) {
    if (!(err instanceof ResourceInUseException)) throw err;
  }
  for (let attempt = 0; ; attempt += 1) {
    const { Table } = await dynamo.send(new DescribeTableCommand({ TableName: tableName }));
    const key = Table?.KeySchema?.[0]?.AttributeName;
    if (key !== TABLE_PARTITION_KEY) {
      throw new Error(`table ${tableName} exists with key ${String(key)}, expected ${TABLE_PARTITION_KEY}`);
    }
    if (Table?.TableStatus === 'ACTIVE') break;
    if (attempt >= 100) throw new Error(`table ${tableName} did not become ACTIVE`);
    await sleep(100);
  }
  // TTL cannot be part of CreateTable; enabling it twice is an error, so look first.
  const { TimeToLiveDescription: ttl } = await dynamo.send(new DescribeTimeToLiveCommand({ TableName: tableName }));
  const enabled = ttl?.TimeToLiveStatus === 'ENABLED' || ttl?.TimeToLiveStatus === 'ENABLING';
  if (enabled && ttl?.AttributeName === TABLE_TTL_ATTRIBUTE) return;
  if (enabled)
    throw new Error(`table ${tableName} has TTL on ${String(ttl?.AttributeName)}, expected ${TABLE_TTL_ATTRIBUTE}`);
  await dynamo.send(
    new UpdateTimeToLiveCommand({
      TableName: tableName,
      TimeToLiveSpecification: { AttributeName: TABLE_TTL_ATTRIBUTE, Enabled: true },
    }),
  );
};

const ensureSecret = async (
  secrets: SecretsManagerClient,
  secretId: string,
  value: LocalAwsOptions['secretValue'],
): Promise<string> => {
  const SecretString = JSON.stringify({ client_id: value.client_id, client_secret: value.client_secret });
  try {
    const created = await secrets.send(new CreateSecretCommand({ Name: secretId, SecretString, Tags: TAGS }));
    return created.ARN!;
  } catch (err) {
    if (!(err instanceof ResourceExistsException)) throw err;
  }
  const updated = await secrets.send(new PutSecretValueCommand({ SecretId: secretId, SecretString }));
  return updated.ARN!;
};

const ensureKey = async (kms: KMSClient, alias: string): Promise<string> => {
  try {
    const { KeyMetadata } = await kms.send(new DescribeKeyCommand({ KeyId: alias }));
    if (KeyMetadata?.Arn && KeyMetadata.KeyState === 'Enabled') return KeyMetadata.Arn;
    throw new Error(`KMS key ${alias} exists but is ${String(KeyMetadata?.KeyState)}`);
  } catch (err) {
    if (!(err instanceof NotFoundException)) throw err;
  }
  const { KeyMetadata } = await kms.send(
    new CreateKeyCommand({
      Description: 'limitrail-token-broker local: envelope encryption of cached tokens',
      KeySpec: 'SYMMETRIC_DEFAULT',
      KeyUsage: 'ENCRYPT_DECRYPT',
      Tags: TAGS.map(({ Key, Value }) => ({ TagKey: Key, TagValue: Value })),
    }),
  );
  const arn = KeyMetadata?.Arn;
  if (!arn || !KeyMetadata.KeyId) throw new Error('CreateKey returned no key ARN');
  await kms.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: KeyMetadata.KeyId }));
  return arn;
};

/**
 * Creates (or finds, by alias) a KMS signing key (KeyUsage SIGN_VERIFY) of `keySpec`, as the stack's stage parameter
 * `upstreamSigningKey` does: what a private_key_jwt client's `signingKeyId` names. Returns its ARN.
 */
export const ensureSigningKey = async (options: {
  endpoint: string;
  region: string;
  alias: string;
  keySpec: 'RSA_2048' | 'ECC_NIST_P256';
  credentials?: LocalAwsOptions['credentials'];
}): Promise<string> => {
  const credentials = options.credentials ?? dummyWhenUnset();
  const kms = new KMSClient({
    endpoint: options.endpoint,
    region: options.region,
    ...(credentials ? { credentials } : {}),
  });
  try {
    try {
      const { KeyMetadata } = await kms.send(new DescribeKeyCommand({ KeyId: options.alias }));
      if (KeyMetadata?.Arn && KeyMetadata.KeyUsage === 'SIGN_VERIFY') return KeyMetadata.Arn;
      throw new Error(`KMS key ${options.alias} exists but is not a signing key`);
    } catch (err) {
      if (!(err instanceof NotFoundException)) throw err;
    }
    const { KeyMetadata } = await kms.send(
      new CreateKeyCommand({
        Description: 'limitrail-token-broker local: signs private_key_jwt client assertions',
        KeySpec: options.keySpec,
        KeyUsage: 'SIGN_VERIFY',
        Tags: TAGS.map(({ Key, Value }) => ({ TagKey: Key, TagValue: Value })),
      }),
    );
    if (!KeyMetadata?.Arn || !KeyMetadata.KeyId) throw new Error('CreateKey returned no key ARN');
    await kms.send(new CreateAliasCommand({ AliasName: options.alias, TargetKeyId: KeyMetadata.KeyId }));
    return KeyMetadata.Arn;
  } finally {
    kms.destroy();
  }
};

/** Creates (or finds) the table, secret and key; returns what the function's environment needs. */
export const setupLocalAws = async (options: LocalAwsOptions): Promise<LocalAws> => {
  const credentials = options.credentials ?? dummyWhenUnset();
  const config = { endpoint: options.endpoint, region: options.region, ...(credentials ? { credentials } : {}) };
  const dynamo = new DynamoDBClient(config);
  const secrets = new SecretsManagerClient(config);
  const kms = new KMSClient(config);
  try {
    const alias = options.kmsKeyAlias ?? `alias/${options.tableName}`;
    if (!alias.startsWith('alias/')) throw new Error(`kmsKeyAlias must start with "alias/": ${alias}`);
    const [, secretArn, kmsKeyId] = await Promise.all([
      ensureTable(dynamo, options.tableName),
      ensureSecret(secrets, options.secretId, options.secretValue),
      ensureKey(kms, alias),
    ]);
    return { tableName: options.tableName, secretArn, kmsKeyId };
  } finally {
    dynamo.destroy();
    secrets.destroy();
    kms.destroy();
  }
};
