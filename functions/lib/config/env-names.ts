/** Environment variables the broker reads (once per container, by config/load-config.ts): the one place that names them. */
export const ENV = {
  tableName: 'TOKEN_TABLE_NAME',
  clients: 'BROKER_CLIENTS',
  callers: 'BROKER_CALLERS',
  callersParameter: 'BROKER_CALLERS_PARAMETER',
  callersMaxAgeSec: 'CALLERS_MAX_AGE_SEC',
  callerAuth: 'CALLER_AUTH',
  callerProofAudience: 'CALLER_PROOF_AUDIENCE',
  kmsKeyId: 'TOKEN_KMS_KEY_ID',
  secretMaxAgeSec: 'SECRET_MAX_AGE_SEC',
  tokenEndpointTimeoutMs: 'TOKEN_ENDPOINT_TIMEOUT_MS',
  memoryCacheMaxEntries: 'MEMORY_CACHE_MAX_ENTRIES',
  dataKeyMaxAgeSec: 'DATA_KEY_MAX_AGE_SEC',
  refreshLeaseMs: 'REFRESH_LEASE_MS',
  tokenEndpointMaxAttempts: 'TOKEN_ENDPOINT_MAX_ATTEMPTS',
  staleTokenMinTtlSec: 'STALE_TOKEN_MIN_TTL_SEC',
  forceRefreshMinIntervalSec: 'FORCE_REFRESH_MIN_INTERVAL_SEC',
  allowLoopbackTokenUrl: 'ALLOW_LOOPBACK_TOKEN_URL',
} as const;

/** Variables the broker cannot start without; the others have defaults. */
export const REQUIRED_ENV = [ENV.tableName, ENV.clients, ENV.kmsKeyId] as const;
