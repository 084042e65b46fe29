/**
 * The broker's configuration: read from the environment once per container, validated, typed (BrokerConfig). Any
 * problem is a ConfigurationError naming the setting (and the client), never quoting a value that could be a secret.
 */

import type { BrokerConfig } from '../domain/settings';
import { parseCallerAuth, parseProofPolicy } from './caller-auth';
import { parseClients } from './clients';
import { ENV } from './env-names';
import { parseGrants } from './grants';
import { booleanSetting, integerSetting, requiredString } from './settings';

/** Reads and validates the whole configuration. Throws ConfigurationError naming the first problem. */
export const loadConfig = (env: NodeJS.ProcessEnv): BrokerConfig => {
  const allowLoopback = booleanSetting(env, ENV.allowLoopbackTokenUrl);
  const clients = parseClients(requiredString(env, ENV.clients), allowLoopback);
  const clientScopes = new Map([...clients].map(([name, client]) => [name, client.scopes]));
  const tokenEndpointTimeoutMs = integerSetting(env, ENV.tokenEndpointTimeoutMs, 5_000, 100, 60_000);
  const callerAuth = parseCallerAuth(env);
  return {
    tableName: requiredString(env, ENV.tableName),
    kmsKeyId: requiredString(env, ENV.kmsKeyId),
    clients,
    grants: parseGrants(env[ENV.callers], clientScopes, ENV.callers, {
      organizations: callerAuth === 'invoke-permission',
    }),
    callerAuth,
    proofPolicy: parseProofPolicy(env, callerAuth),
    secretMaxAgeSec: integerSetting(env, ENV.secretMaxAgeSec, 300, 0, 86_400),
    tokenEndpointTimeoutMs,
    memoryCacheMaxEntries: integerSetting(env, ENV.memoryCacheMaxEntries, 500, 1, 100_000),
    dataKeyMaxAgeSec: integerSetting(env, ENV.dataKeyMaxAgeSec, 300, 1, 86_400),
    refreshLeaseMs: integerSetting(env, ENV.refreshLeaseMs, tokenEndpointTimeoutMs + 3_000, 200, 120_000),
    tokenEndpointMaxAttempts: integerSetting(env, ENV.tokenEndpointMaxAttempts, 3, 1, 10),
    staleTokenMinTtlSec: integerSetting(env, ENV.staleTokenMinTtlSec, 30, 1, 3_600),
    forceRefreshMinIntervalSec: integerSetting(env, ENV.forceRefreshMinIntervalSec, 30, 0, 3_600),
  };
};
