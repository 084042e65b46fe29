/**
 * The one error this package raises for the broker's answers and for failures to reach it: `TokenBrokerError`,
 * with the broker's OAuth error code (`error`), its HTTP-style `status` and its description. Descriptions come
 * from the broker (which never puts a token or a secret in them) or from this package (which never puts a token,
 * a proof or credentials in them).
 */

/** The broker's error codes (RFC 6749 names) and what a caller does about each. */
export const BROKER_ERRORS = {
  /** Malformed request: fix the call. */
  invalidRequest: 'invalid_request',
  /** A scope not configured for the client: ask for configured scopes. */
  invalidScope: 'invalid_scope',
  /** No proof, a refused proof, or no grant: get a grant for this role (or fix its credentials). */
  accessDenied: 'access_denied',
  /** The broker's configuration or its upstream is broken: page the platform team. */
  serverError: 'server_error',
  /** Retried by the client within its deadline; raised once the deadline leaves no room for another try. */
  temporarilyUnavailable: 'temporarily_unavailable',
} as const;

export interface TokenBrokerErrorOptions {
  /** With `temporarily_unavailable`: the broker asked for at least this long before the next try. */
  retryAfterSeconds?: number;
  cause?: unknown;
}

export class TokenBrokerError extends Error {
  override readonly name = 'TokenBrokerError';
  readonly retryAfterSeconds: number | undefined;

  constructor(
    /** The OAuth error code: `invalid_request`, `invalid_scope`, `access_denied`, `server_error`, `temporarily_unavailable`. */
    readonly error: string,
    /** The broker's status for it (400, 403, 500, 502, 503). */
    readonly status: number,
    /** The broker's `error_description`. */
    readonly description: string,
    options: TokenBrokerErrorOptions = {},
  ) {
    super(`${error}: ${description}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  /** Whether the client retries it (within its deadline): the broker or its dependencies are down for now. */
  get retryable(): boolean {
    return this.error === BROKER_ERRORS.temporarilyUnavailable;
  }
}
