/**
 * One error hierarchy. `error` is the OAuth error code callers see (stable), `status` the HTTP-style status,
 * `reason` a finer stable code for logs and metrics. Descriptions never contain a secret or a token: build them
 * from ids, names, codes and numbers only.
 */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_scope'
  | 'access_denied'
  | 'server_error'
  | 'temporarily_unavailable';

/**
 * Every `reason` a BrokerError carries: the stable codes of logs (`reason`), refusal audit lines and the
 * `IdentityFailure.<reason>` and `UpstreamError.<reason>` metrics. Each has an entry in docs/troubleshooting.md
 * (test/unit/docs.test.ts); compare reasons only against this union, so a typo does not compile.
 */
export const REASONS = [
  // The caller's request (400 / 405)
  'invalid_request',
  'unknown_client',
  'url_event_malformed',
  'method_not_allowed',
  'scope_not_allowed',
  // Who is calling (identity proofs, grants): 400 for a malformed proof, else 403; STS failing is 503
  'proof_missing',
  'proof_malformed',
  'proof_unsigned',
  'proof_not_sts',
  'proof_not_get_caller_identity',
  'proof_wrong_audience',
  'proof_audience_unsigned',
  'proof_expired',
  'proof_from_future',
  'proof_unverifiable',
  'proof_refused_by_sts',
  'proof_caller_mismatch',
  'sts_unavailable',
  'sts_malformed_answer',
  'caller_unverified',
  'caller_not_granted',
  'caller_revoked',
  'token_scope_beyond_grant',
  'access_denied',
  // Our configuration and secret (500)
  'config_invalid',
  'secret_not_found',
  'secret_unreadable',
  'secret_malformed',
  'secret_client_mismatch',
  // The token endpoint (502 / 400 / 503)
  'upstream_invalid_client',
  'upstream_invalid_scope',
  'upstream_scope_narrowed',
  'upstream_refused',
  'upstream_redirect',
  'upstream_malformed_response',
  'upstream_response_too_large',
  'upstream_unreachable',
  'upstream_timeout',
  'upstream_rate_limited',
  'upstream_unavailable',
  // AWS dependencies, time and forced refreshes (503)
  'table_unavailable',
  'secrets_unavailable',
  'kms_unavailable',
  'callers_unavailable',
  // The KMS key that signs a private_key_jwt client's assertions (503): KMS down or throttling (retried within the
  // deadline); the key disabled, deleted, not allowed or unfit for the configured algorithm (not retried)
  'signing_unavailable',
  'signing_key_unusable',
  'lease_wait_timeout',
  'deadline_exceeded',
  'force_refresh_limited',
  'force_refresh_budget',
] as const;
export type Reason = (typeof REASONS)[number];
/** Why a table item holding a token was treated as a miss (logged, counted as UnusableItems). */
export const UNUSABLE_ITEM_REASONS = ['previous_item_format', 'malformed_item', 'decrypt_failed'] as const;
export type UnusableItemReason = (typeof UNUSABLE_ITEM_REASONS)[number];

/**
 * Reasons only log lines carry: `unexpected` for anything that is not a broker error (logged by name only), and
 * `rollback_suspected`.
 */
export const LOG_ONLY_REASONS = [
  'unexpected',
  /** A table token older than one the container served, or reported rejected: a miss (cache/rollback-guard.ts). */
  'rollback_suspected',
] as const;
/** A log line's reason: a broker error's, or a log-only one. */
export type LogReason = Reason | (typeof LOG_ONLY_REASONS)[number];

export interface OAuthErrorBody {
  error: OAuthErrorCode;
  error_description: string;
  status: number;
  /** With temporarily_unavailable, when it says: retry no earlier than this many seconds from now. */
  retryAfterSeconds?: number;
}

export class BrokerError extends Error {
  constructor(
    readonly error: OAuthErrorCode,
    readonly status: number,
    readonly reason: Reason,
    description: string,
    options?: { cause?: unknown },
  ) {
    super(description, options);
    this.name = new.target.name;
  }

  toOAuth(): OAuthErrorBody {
    return { error: this.error, error_description: this.message, status: this.status };
  }
}

/** The caller's event is malformed (400). */
export class InvalidRequestError extends BrokerError {
  constructor(description: string, reason: Reason = 'invalid_request') {
    super('invalid_request', 400, reason, description);
  }
}

/** A scope is not allowed for the client, or the token endpoint refused it (400). */
export class InvalidScopeError extends BrokerError {
  constructor(description: string, reason: Reason = 'scope_not_allowed') {
    super('invalid_scope', 400, reason, description);
  }
}

/** The caller may not have this token (403). */
export class AccessDeniedError extends BrokerError {
  constructor(description: string, reason: Reason = 'access_denied') {
    super('access_denied', 403, reason, description);
  }
}

/** Our side is wrong: bad configuration or a bad secret (500). */
export class ConfigurationError extends BrokerError {
  constructor(description: string, reason: Reason, options?: { cause?: unknown }) {
    super('server_error', 500, reason, description, options);
  }
}

/** Raises the configuration error for a setting that fails a check (`Fail` of assert.ts). */
export const invalidConfiguration = (what: string): never => {
  throw new ConfigurationError(`invalid configuration: ${what}`, 'config_invalid');
};

/** The token endpoint rejected our credentials or answered something unusable (502). */
export class UpstreamError extends BrokerError {
  constructor(description: string, reason: Reason, options?: { cause?: unknown }) {
    super('server_error', 502, reason, description, options);
  }
}

/** The token endpoint or an AWS dependency is down, slow or throttling (503). */
export class UnavailableError extends BrokerError {
  constructor(
    description: string,
    reason: Reason,
    options?: { cause?: unknown; retryAfterMs?: number; retryAfterSeconds?: number },
  ) {
    super('temporarily_unavailable', 503, reason, description, options);
    this.retryAfterMs = options?.retryAfterMs;
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }

  /** How long the service asked us to wait (Retry-After), when it said. */
  readonly retryAfterMs: number | undefined;
  /** When the caller may retry with a chance of success, if the broker knows (told the caller in the answer). */
  readonly retryAfterSeconds: number | undefined;

  override toOAuth(): OAuthErrorBody {
    const body = super.toOAuth();
    return this.retryAfterSeconds === undefined ? body : { ...body, retryAfterSeconds: this.retryAfterSeconds };
  }
}

/**
 * What leaves the function for any failure. Unknown errors become a generic server_error: their messages
 * may carry anything (an SDK error can quote a request), so they are never passed through.
 */
export const toOAuthError = (err: unknown): OAuthErrorBody =>
  err instanceof BrokerError
    ? err.toOAuth()
    : { error: 'server_error', error_description: 'internal error in the token broker', status: 500 };

/** Quote caller-supplied text in a description: JSON-escaped and cut to a bounded length. */
export const quote = (value: unknown, maxChars = 64): string => {
  const text = typeof value === 'string' ? value : String(value);
  const cut = text.length > maxChars ? `${text.slice(0, maxChars)}…` : text;
  return JSON.stringify(cut);
};

/**
 * Log fields for an error: a broker error's stable reason and its description (built to be safe); anything else
 * only by its name, since its message may quote a request, a body or a secret.
 */
export const errorLogFields = (err: unknown): { reason: LogReason; detail: string } =>
  err instanceof BrokerError
    ? { reason: err.reason, detail: err.message }
    : {
        reason: 'unexpected',
        detail: (err as { name?: unknown } | undefined)?.name === undefined ? typeof err : String((err as Error).name),
      };
