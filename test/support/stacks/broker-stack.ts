import { type AttributeValue, DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { DynamoTokenTable } from '../../../functions/lib/cache/table/dynamo-token-table';
import { TokenCipher } from '../../../functions/lib/cache/table/token-cipher';
import { cacheKeyFor } from '../../../functions/lib/domain/cache-key';
import { type CachedToken, lifetimeOf } from '../../../functions/lib/domain/cached-token';
import { createTokenHandler, type InvocationContext } from '../../../functions/lib/handlers/token-handler';
import { createRuntime, loggerFromEnv, type RuntimeOverrides } from '../../../functions/lib/runtime';
import { systemClock } from '../../../functions/lib/shared/clock';
import { captureLogLines } from '../log-capture';
import { setupLocalAws } from './aws-setup';
import { type MotoServer, startMoto } from './moto';
import { type Sandbox, startSandbox } from './sandbox';

export const REGION = 'us-east-1';
export const SECRET_ID = 'limitrail/broker-client';

/** Real local components for one test file: moto_server (DynamoDB, Secrets Manager, KMS) and the LimitRail sandbox. */
export interface BrokerStack {
  moto: MotoServer;
  sandbox: Sandbox;
  tableName: string;
  kmsKeyId: string;
  /** Environment for a broker container: config plus the SDK's standard endpoint variables. */
  env: Record<string, string>;
  dynamodb: DynamoDBClient;
  secretsManager: SecretsManagerClient;
  scanTable(): Promise<Record<string, AttributeValue>[]>;
  stop(): Promise<void>;
}

export const awsEnv = (endpoint: string): Record<string, string> => ({
  AWS_ENDPOINT_URL: endpoint,
  AWS_REGION: REGION,
  AWS_ACCESS_KEY_ID: 'test',
  AWS_SECRET_ACCESS_KEY: 'test',
});

export const startBrokerStack = async (
  options: { tokenLifetimeSec?: number; env?: Record<string, string>; tableName?: string } = {},
): Promise<BrokerStack> => {
  const moto = await startMoto();
  const sandbox = await startSandbox({ tokenLifetimeSec: options.tokenLifetimeSec ?? 3600 });
  const client = sandbox.clients[0]!;
  const tableName = options.tableName ?? 'limitrail-tokens-test';
  const { kmsKeyId } = await setupLocalAws({
    endpoint: moto.endpoint,
    region: REGION,
    tableName,
    secretId: SECRET_ID,
    secretValue: { client_id: client.clientId, client_secret: client.clientSecret },
  });
  const env = {
    ...awsEnv(moto.endpoint),
    // These stacks prove the token path (cache, lease, failures), where who is calling does not matter: the older
    // authorization model lets them invoke without identity proofs. test/integration/identity.test.ts and
    // url-auth.test.ts prove the default, grants, where every caller signs a proof.
    CALLER_AUTH: 'invoke-permission',
    ALLOW_LOOPBACK_TOKEN_URL: 'true', // the sandbox listens on 127.0.0.1
    TOKEN_TABLE_NAME: tableName,
    TOKEN_KMS_KEY_ID: kmsKeyId,
    BROKER_CLIENTS: JSON.stringify({
      limitrail: { secretId: SECRET_ID, tokenUrl: sandbox.tokenUrl, clientId: client.clientId, scopes: client.scopes },
    }),
    ...options.env,
  };
  const clientConfig = {
    endpoint: moto.endpoint,
    region: REGION,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  };
  const dynamodb = new DynamoDBClient(clientConfig);
  const secretsManager = new SecretsManagerClient(clientConfig);
  return {
    moto,
    sandbox,
    tableName,
    kmsKeyId,
    env,
    dynamodb,
    secretsManager,
    scanTable: async () =>
      (await dynamodb.send(new ScanCommand({ TableName: tableName, ConsistentRead: true }))).Items ?? [],
    stop: async () => {
      dynamodb.destroy();
      secretsManager.destroy();
      await Promise.allSettled([sandbox.stop(), moto.stop()]);
    },
  };
};

/**
 * Writes a token into the table the way the broker does (same store, same envelope encryption under the stack's
 * KMS key), for tests that need a token of a given age without waiting for it to age.
 */
export const seedToken = async (
  stack: BrokerStack,
  scopes: string[],
  options: { accessToken: string; ageSec: number; lifetimeSec: number },
): Promise<CachedToken> => {
  const { KMSClient } = await import('@aws-sdk/client-kms');
  const kms = new KMSClient({
    endpoint: stack.moto.endpoint,
    region: REGION,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  const store = new DynamoTokenTable(
    stack.dynamodb,
    stack.tableName,
    new TokenCipher(kms, stack.kmsKeyId, systemClock, 300),
  );
  const client = stack.sandbox.clients[0]!;
  const normalized = [...new Set(scopes)].sort();
  const token: CachedToken = {
    accessToken: options.accessToken,
    scopes: normalized,
    ...lifetimeOf(Date.now() - options.ageSec * 1000, options.lifetimeSec),
  };
  await store.writeToken(cacheKeyFor(stack.sandbox.tokenUrl, client.clientId, normalized), token, 'limitrail');
  kms.destroy();
  return token;
};

/**
 * A fresh in-process "container": its own runtime, memory cache and AWS clients. Its log lines (with every other
 * JSON line this process writes to stdout and stderr from now on: see log-capture.ts) go to `logLines`.
 */
export const inProcessContainer = (
  env: Record<string, string>,
  logLines: string[],
  overrides: RuntimeOverrides = {},
  context: InvocationContext = {},
) => {
  captureLogLines(logLines);
  const handler = createTokenHandler(
    () => createRuntime(env, overrides),
    () => loggerFromEnv(env),
  );
  return async (event: unknown, ctx: InvocationContext = context): Promise<Record<string, unknown>> =>
    (await handler(event, { awsRequestId: 'test', ...ctx })) as unknown as Record<string, unknown>;
};
