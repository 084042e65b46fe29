/**
 * Everything one container needs, built once: typed config, AWS clients, caches and the broker. AWS endpoints
 * come from the SDK's standard variables (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_DYNAMODB, ...), never from ours.
 */

import { SSMProvider } from '@aws-lambda-powertools/parameters/ssm';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SSMClient } from '@aws-sdk/client-ssm';
import { type BrokerDeps, TokenBroker } from './broker/token-broker';
import { TableLease, type TableLeaseDeps } from './cache/lease/table-lease';
import { MemoryTokenCache } from './cache/memory-cache';
import { DynamoTokenTable } from './cache/table/dynamo-token-table';
import { TokenCipher } from './cache/table/token-cipher';
import { SsmCallerDirectory } from './callers/ssm-caller-directory';
import { StaticCallerDirectory } from './callers/static-caller-directory';
import { StsIdentityVerifier } from './callers/sts-identity-verifier';
import { clientScopesOf } from './config/grants';
import { loadConfig } from './config/load-config';
import type { BrokerConfig } from './domain/settings';
import type { HandlerRuntime } from './handlers/invocation';
import type { CallerDirectory, IdentityVerifier } from './ports';
import { type Clock, systemClock } from './shared/clock';
import { createPowertoolsLogger, Logger } from './shared/logger';
import { EmfWriter } from './shared/metrics';
import { ContainerTelemetry, functionSettingsFromEnv } from './shared/telemetry';
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
  /** The client the callers parameter is read with (BROKER_CALLERS_PARAMETER). */
  ssm?: SSMClient;
  callers?: IdentityVerifier;
}

/**
 * AWS calls are on the request path: fail fast and let the broker degrade instead of hanging. The longest table call
 * these allow is what cache/lease/lease-rules.ts TABLE_CALL_MAX_MS allows for.
 */
export const AWS_CLIENT_SETTINGS = {
  maxAttempts: 2,
  requestHandler: { connectionTimeout: 1_000, requestTimeout: 3_000 },
} as const;

/**
 * Where the callers come from: the SSM parameter (BROKER_CALLERS_PARAMETER) through Powertools Parameters'
 * SSMProvider, whose SSM client is made only then, or BROKER_CALLERS.
 */
const callerDirectoryFor = (config: BrokerConfig, clock: Clock, ssm: SSMClient | undefined): CallerDirectory => {
  if (!config.callersParameter) return new StaticCallerDirectory(config.grants);
  return new SsmCallerDirectory(new SSMProvider({ awsSdkV3Client: ssm ?? new SSMClient(AWS_CLIENT_SETTINGS) }), {
    parameter: config.callersParameter,
    clientScopes: clientScopesOf(config.clients),
    grantOptions: { organizations: config.callerAuth === 'invoke-permission' },
    clock,
  });
};

/** Powertools logs on stdout and stderr; level and service from the POWERTOOLS_* variables (functions/lib/shared/logger.ts). */
export const loggerFromEnv = (env: NodeJS.ProcessEnv): Logger => new Logger(createPowertoolsLogger(env));

/** Builds the runtime from the environment. Throws ConfigurationError when the configuration is invalid. */
export const createRuntime = (env: NodeJS.ProcessEnv, overrides: RuntimeOverrides = {}): Runtime => {
  const log = loggerFromEnv(env);
  const telemetry = new ContainerTelemetry(
    log,
    new EmfWriter(env.AWS_LAMBDA_FUNCTION_NAME ?? 'local'),
    functionSettingsFromEnv(env),
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
  const callerDirectory = callerDirectoryFor(config, clock, overrides.ssm);
  return { config, broker, clock, telemetry, callers, callerDirectory, parts };
};
