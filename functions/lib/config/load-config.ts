/**
 * The broker's configuration: read from the environment once per container, validated, typed (BrokerConfig). Any
 * problem is a ConfigurationError naming the setting (and the client), never quoting a value that could be a secret.
 */

import { type ProofPolicy, partitionOf, stsOriginFrom } from '../domain/proof';
import type { BrokerConfig, CallerAuthMode, ClientConfig } from '../domain/settings';
import { assertArray, assertKnownKeys, assertRecord, assertScopeTokens, assertString } from '../shared/assert';
import { invalidConfiguration as fail } from '../shared/errors';
import { normalizeScopes } from '../shared/scopes';
import { ENV } from './env-names';
import { parseGrants } from './grants';

const CLIENT_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const CLIENT_FIELDS = new Set(['secretId', 'tokenUrl', 'clientId', 'scopes', 'prewarm']);
const LOOPBACK_HOSTS = new Set(['localhost', '[::1]']);

const requiredString = (env: NodeJS.ProcessEnv, name: string): string => {
  const value = env[name]?.trim();
  return value ? value : fail(`${name} is not set`);
};

const integerSetting = (env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number => {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  return Number.isInteger(value) && value >= min && value <= max
    ? value
    : fail(`${name} must be an integer from ${min} to ${max}`);
};

const booleanSetting = (env: NodeJS.ProcessEnv, name: string): boolean => {
  const raw = env[name]?.trim() ?? '';
  if (raw === '' || raw === 'false') return false;
  return raw === 'true' ? true : fail(`${name} must be "true" or "false"`);
};

const isLoopback = (hostname: string): boolean => LOOPBACK_HOSTS.has(hostname) || /^127(\.\d{1,3}){3}$/.test(hostname);

/**
 * https; plain http only to a loopback host and only where ALLOW_LOOPBACK_TOKEN_URL=true (the local stage, tests).
 * Inside Lambda, 127.0.0.1:9001 is the Runtime API: a loopback token URL there would hand the client secret, in
 * clear, to whatever listens locally. No credentials or fragment in the URL.
 */
const checkTokenUrl = (where: string, value: unknown, allowLoopback: boolean): string => {
  assertString(value, where, fail, 'a string', () => true);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return fail(`${where} is not an absolute URL`);
  }
  if (url.username || url.password) return fail(`${where} must not contain credentials`);
  if (url.hash) return fail(`${where} must not have a fragment`);
  if (url.protocol === 'https:') return url.toString();
  if (url.protocol !== 'http:' || !isLoopback(url.hostname)) return fail(`${where} must be https`);
  return allowLoopback
    ? url.toString()
    : fail(
        `${where} is plain http to a loopback host, allowed only with ${ENV.allowLoopbackTokenUrl}=true (local runs and tests)`,
      );
};

const parseClient = (name: string, raw: unknown, allowLoopback: boolean): ClientConfig => {
  const where = `${ENV.clients}.${name}`;
  if (!CLIENT_NAME.test(name)) fail(`client name ${JSON.stringify(name.slice(0, 64))} must match ${CLIENT_NAME}`);
  assertRecord(raw, where, fail);
  assertKnownKeys(raw, CLIENT_FIELDS, where, fail);
  const { secretId, clientId, scopes } = raw;
  assertString(
    secretId,
    `${where}.secretId`,
    fail,
    'a non-empty secret name or ARN',
    (s) => s.trim() !== '' && s.length <= 2048,
  );
  if (clientId !== undefined) {
    assertString(clientId, `${where}.clientId`, fail, 'a non-empty string without spaces', (s) =>
      /^[\x21-\x7E]{1,256}$/.test(s),
    );
  }
  assertArray(scopes, `${where}.scopes`, fail);
  assertScopeTokens(scopes, (i) => `${where}.scopes[${i}]`, fail, 'an RFC 6749 scope token');
  const allowed = new Set(normalizeScopes(scopes));
  return {
    name,
    secretId,
    tokenUrl: checkTokenUrl(`${where}.tokenUrl`, raw.tokenUrl, allowLoopback),
    clientId,
    scopes: allowed,
    prewarm: parsePrewarm(`${where}.prewarm`, raw.prewarm, allowed),
  };
};

/** `"prewarm": [["a"], ["a", "b"]]`: scope sets, each non-empty and allowed for the client. */
const parsePrewarm = (where: string, raw: unknown, allowed: ReadonlySet<string>): string[][] => {
  if (raw === undefined) return [];
  assertArray(raw, where, fail, 'an array of scope arrays', 0);
  const sets = raw.map((set, i) => {
    assertArray(set, `${where}[${i}]`, fail, 'a non-empty array of scopes');
    assertScopeTokens(set, (j) => `${where}[${i}][${j}]`, fail, "one of the client's scopes", allowed);
    return normalizeScopes(set);
  });
  return [...new Map(sets.map((set) => [set.join(' '), set])).values()];
};

const parseClients = (text: string, allowLoopback: boolean): Map<string, ClientConfig> => {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    // The parser's message quotes the input: never pass it on.
    return fail(`${ENV.clients} is not valid JSON`);
  }
  assertRecord(raw, ENV.clients, fail, 'a JSON object of client name -> client settings');
  const names = Object.keys(raw);
  if (names.length === 0) fail(`${ENV.clients} configures no client`);
  return new Map(names.map((name) => [name, parseClient(name, raw[name], allowLoopback)]));
};

/** Reads and validates the whole configuration. Throws ConfigurationError naming the first problem. */
const parseCallerAuth = (env: NodeJS.ProcessEnv): CallerAuthMode => {
  const raw = env[ENV.callerAuth]?.trim() || 'grants';
  return raw === 'grants' || raw === 'invoke-permission'
    ? raw
    : fail(`${ENV.callerAuth} must be "grants" or "invoke-permission"`);
};

/** The audience proofs must name: CALLER_PROOF_AUDIENCE, else the function's own name (required in grants mode). */
const parseProofPolicy = (env: NodeJS.ProcessEnv, mode: CallerAuthMode): ProofPolicy | undefined => {
  const audience = env[ENV.callerProofAudience]?.trim() || env.AWS_LAMBDA_FUNCTION_NAME?.trim() || undefined;
  if (audience === undefined) {
    return mode === 'grants' ? fail(`${ENV.callerProofAudience} is not set (nor AWS_LAMBDA_FUNCTION_NAME)`) : undefined;
  }
  if (!/^[\x21-\x7E]{1,256}$/.test(audience))
    fail(`${ENV.callerProofAudience} must be 1 to 256 printable characters without spaces`);
  const endpoint = env.AWS_ENDPOINT_URL_STS;
  const stsOrigin = stsOriginFrom(endpoint);
  if (endpoint !== undefined && endpoint.trim() !== '' && stsOrigin === undefined)
    fail('AWS_ENDPOINT_URL_STS is not an absolute URL');
  return { audience, stsOrigin, partition: partitionOf(env.AWS_REGION) };
};

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
