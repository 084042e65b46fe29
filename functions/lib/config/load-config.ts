/**
 * The broker's configuration: read from the environment once per container, validated, typed (BrokerConfig). Any
 * problem is a ConfigurationError naming the setting (and the client), never quoting a value that could be a secret.
 */

import type { BrokerConfig, CallersParameter } from '../domain/settings';
import { invalidConfiguration as fail } from '../shared/errors';
import { parseCallerAuth, parseProofPolicy } from './caller-auth';
import { parseClients } from './clients';
import { ENV } from './env-names';
import { clientScopesOf, parseGrants } from './grants';
import { booleanSetting, integerSetting, requiredString } from './settings';

/** An SSM parameter name (`/limitrail-token-broker/prod/callers`) or its ARN. */
const PARAMETER_NAME =
  /^(?:arn:(?:aws|aws-cn|aws-us-gov):ssm:[a-z0-9-]+:\d{12}:parameter\/[A-Za-z0-9_.\-/]{1,1011}|[A-Za-z0-9_.\-/]{1,1011})$/;

/** BROKER_CALLERS_PARAMETER and CALLERS_MAX_AGE_SEC; undefined when the callers come from BROKER_CALLERS. */
const parseCallersParameter = (env: NodeJS.ProcessEnv): CallersParameter | undefined => {
  const name = env[ENV.callersParameter]?.trim() ?? '';
  if (name === '') return undefined;
  if (!PARAMETER_NAME.test(name))
    fail(`${ENV.callersParameter} must be the name or ARN of an SSM parameter (letters, digits, _.-/)`);
  if ((env[ENV.callers]?.trim() ?? '') !== '') {
    fail(
      `${ENV.callers} and ${ENV.callersParameter} are both set: the callers come from one place, ` +
        `the SSM parameter (unset ${ENV.callers}) or the variable (unset ${ENV.callersParameter})`,
    );
  }
  return { name, maxAgeSec: integerSetting(env, ENV.callersMaxAgeSec, 60, 1, 900) };
};

/** Reads and validates the whole configuration. Throws ConfigurationError naming the first problem. */
export const loadConfig = (env: NodeJS.ProcessEnv): BrokerConfig => {
  const allowLoopback = booleanSetting(env, ENV.allowLoopbackTokenUrl);
  const clients = parseClients(requiredString(env, ENV.clients), allowLoopback);
  const clientScopes = clientScopesOf(clients);
  const tokenEndpointTimeoutMs = integerSetting(env, ENV.tokenEndpointTimeoutMs, 5_000, 100, 60_000);
  const callerAuth = parseCallerAuth(env);
  const callersParameter = parseCallersParameter(env);
  return {
    tableName: requiredString(env, ENV.tableName),
    kmsKeyId: requiredString(env, ENV.kmsKeyId),
    clients,
    grants: parseGrants(env[ENV.callers], clientScopes, ENV.callers, {
      organizations: callerAuth === 'invoke-permission',
    }),
    callersParameter,
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
