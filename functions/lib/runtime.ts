/**
 * Everything one container needs, built once: typed config, AWS clients, caches and the broker. AWS endpoints
 * come from the SDK's standard variables (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_DYNAMODB, ...), never from ours.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { type BrokerDeps, TokenBroker } from './broker/token-broker';
import { TableLease, type TableLeaseDeps } from './cache/lease/table-lease';
import { MemoryTokenCache } from './cache/memory-cache';
import { DynamoTokenTable } from './cache/table/dynamo-token-table';
import { TokenCipher } from './cache/table/token-cipher';
import { StsIdentityVerifier } from './callers/sts-identity-verifier';
import { loadConfig } from './config/load-config';
import type { HandlerRuntime } from './handlers/invocation';
import type { IdentityVerifier } from './ports';
import { type Clock, systemClock } from './shared/clock';
import { createPowertoolsLogger, Logger } from './shared/logger';
import { Metrics } from './shared/metrics';
import { EndpointTokenProvider } from './upstream/endpoint-token-provider';
import { KmsAssertionSigner } from './upstream/kms-assertion-signer';
import { SecretsManagerCredentials } from './upstream/secrets-manager-credentials';

/** The container's services (what the handlers use), and what the broker is built from. */
export interface Runtime extends HandlerRuntime {
  /** What the broker is built from (its adapters and the lease protocol), for a different assembly of them. */
  parts: BrokerDeps;
}

export interface RuntimeOverrides {
  clock?: Clock;
  dynamodb?: DynamoDBClient;
  secretsManager?: SecretsManagerClient;
  kms?: KMSClient;
  callers?: IdentityVerifier;
}

/** AWS calls are on the request path: fail fast and let the broker degrade instead of hanging. */
const AWS_CLIENT_SETTINGS = {
  maxAttempts: 2,
  requestHandler: { connectionTimeout: 1_000, requestTimeout: 3_000 },
} as const;

/** Powertools logs on stdout and stderr; level and service from the POWERTOOLS_* variables (functions/lib/shared/logger.ts). */
export const loggerFromEnv = (env: NodeJS.ProcessEnv): Logger => new Logger(createPowertoolsLogger(env));

/** Builds the runtime from the environment. Throws ConfigurationError when the configuration is invalid. */
export const createRuntime = (env: NodeJS.ProcessEnv, overrides: RuntimeOverrides = {}): Runtime => {
  const log = loggerFromEnv(env);
  const metrics = new Metrics(
    env.AWS_LAMBDA_FUNCTION_NAME ?? 'local',
    env.AWS_LAMBDA_INITIALIZATION_TYPE === 'on-demand',
  );
  const config = loadConfig(env);
  const clock = overrides.clock ?? systemClock;
  const dynamodb = overrides.dynamodb ?? new DynamoDBClient(AWS_CLIENT_SETTINGS);
  const secretsManager = overrides.secretsManager ?? new SecretsManagerClient(AWS_CLIENT_SETTINGS);
  const kms = overrides.kms ?? new KMSClient(AWS_CLIENT_SETTINGS);
  const secrets = new SecretsManagerCredentials(secretsManager, clock, config.secretMaxAgeSec);
  const store = new DynamoTokenTable(
    dynamodb,
    config.tableName,
    new TokenCipher(kms, config.kmsKeyId, clock, config.dataKeyMaxAgeSec),
  );
  const memory = new MemoryTokenCache(config.memoryCacheMaxEntries);
  const fetcher = new EndpointTokenProvider(secrets, clock, {
    timeoutMs: config.tokenEndpointTimeoutMs,
    maxAttempts: config.tokenEndpointMaxAttempts,
    // private_key_jwt clients sign with KMS through the same client as the token cipher (one per container).
    signer: new KmsAssertionSigner(kms, clock),
  });
  const leaseDeps: TableLeaseDeps = {
    store,
    fetcher,
    memory,
    clock,
    leaseDurationMs: config.refreshLeaseMs,
    forceRefreshIntervalMs: config.forceRefreshMinIntervalSec * 1000,
  };
  const parts: BrokerDeps = { config, clock, log, secrets, store, memory, fetcher, lease: new TableLease(leaseDeps) };
  const broker = new TokenBroker(parts);
  if (config.callerAuth === 'invoke-permission') {
    log.warn(
      'CALLER_AUTH=invoke-permission: a direct invoke without an identity proof may get every configured scope',
      {
        callerAuth: config.callerAuth,
        meaning:
          'any principal with lambda:InvokeFunction on this function (broad roles have it) gets any token, and its audit lines name no caller; set CALLER_AUTH=grants',
      },
    );
  }
  const callers = overrides.callers ?? new StsIdentityVerifier(clock);
  return { config, broker, clock, log, metrics, callers, parts };
};
