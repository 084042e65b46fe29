/**
 * One token fetch from the token endpoint (the way out): the credentials (following a secret rotation), the request
 * with retries inside the invocation's time, the token's lifetime, and recognizing a re-issued token.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { tokenFingerprint } from '../domain/cache-key';
import { type CachedToken, lifetimeOf } from '../domain/cached-token';
import type { ClientCredentials } from '../domain/client-credentials';
import type { ClientConfig } from '../domain/settings';
import type { CredentialSource, FetchRequest, TokenProvider } from '../ports';
import { fullJitterDelayMs } from '../shared/backoff';
import type { Clock } from '../shared/clock';
import { BrokerError, ConfigurationError, quote, type Reason, UnavailableError, UpstreamError } from '../shared/errors';
import { requestToken as httpRequestToken, type IssuedToken } from './token-endpoint';

/** Below this much time left before the deadline, no token request is started. */
export const MIN_REQUEST_BUDGET_MS = 100;
/** Token request retries: 100 ms doubling to 2 s, full jitter. */
const RETRY = { baseMs: 100, capMs: 2_000 } as const;

/** Failures worth another attempt: network errors, timeouts, 429 and 5xx. Never another 4xx. */
const RETRYABLE = new Set<Reason>([
  'upstream_unreachable',
  'upstream_timeout',
  'upstream_rate_limited',
  'upstream_unavailable',
]);
export const isRetryable = (err: unknown): boolean => err instanceof BrokerError && RETRYABLE.has(err.reason);

/** Capped exponential backoff with full jitter, but never shorter than the server's Retry-After. */
export const retryDelayMs = (attempt: number, random: number, retryAfterMs?: number): number =>
  Math.max(retryAfterMs ?? 0, fullJitterDelayMs(attempt - 1, random, RETRY));

export interface EndpointTokenProviderOptions {
  timeoutMs: number;
  maxAttempts: number;
  request?: typeof httpRequestToken;
  random?: () => number;
  /** Waits between attempts (a fake clock's in unit tests; real timers by default). */
  sleep?: (ms: number) => Promise<void>;
}

/**
 * Fetches one token from the token endpoint: the client's credentials (following a secret rotation), the
 * request with retries inside the time left, and the token's lifetime. A refresh that gets back the token it was
 * meant to replace marks it re-issued.
 */
export class EndpointTokenProvider implements TokenProvider {
  readonly #request: typeof httpRequestToken;
  readonly #random: () => number;
  readonly #sleep: (ms: number) => Promise<void>;

  constructor(
    private readonly secrets: CredentialSource,
    private readonly clock: Clock,
    private readonly options: EndpointTokenProviderOptions,
  ) {
    this.#request = options.request ?? httpRequestToken;
    this.#random = options.random ?? Math.random;
    this.#sleep = options.sleep ?? ((ms) => sleep(ms));
  }

  async fetch(ctx: FetchRequest): Promise<CachedToken> {
    const { log, previous } = ctx;
    const sentAtMs = this.clock.nowMs();
    const grant = await this.#withRotation(ctx);
    const fresh = lifetimeOf(sentAtMs, grant.expiresInSec);
    const reissued = previous !== undefined && previous.accessToken === grant.accessToken;
    const token: CachedToken = reissued
      ? {
          ...fresh,
          accessToken: grant.accessToken,
          scopes: grant.scopes,
          issuedAtEpochSec: previous.issuedAtEpochSec,
          refreshAtEpochSec: fresh.expiresAtEpochSec,
          reissued,
        }
      : { ...fresh, accessToken: grant.accessToken, scopes: grant.scopes };
    log.info('token fetched from the token endpoint', {
      ...ctx.keyFields,
      latencyMs: this.clock.nowMs() - sentAtMs,
      expiresInSec: grant.expiresInSec,
      tokenFingerprint: tokenFingerprint(token.accessToken),
      ...(reissued ? { reissued } : {}),
    });
    if (reissued)
      log.warn('token endpoint re-issued the token being refreshed; no refresh before it expires', ctx.keyFields);
    return token;
  }

  /**
   * The cached credentials first. If the endpoint rejects them (invalid_client), the secret is read again now: a
   * new version is tried; if the version did not change, AWSPREVIOUS is (the endpoint may not have activated the
   * rotated secret yet). Only then are the credentials reported rejected.
   */
  async #withRotation(ctx: FetchRequest): Promise<IssuedToken> {
    const { client, log, keyFields } = ctx;
    const onFallback = (err: BrokerError) => ctx.degraded('secret_fallback', err.reason, { detail: err.message });
    const cached = await this.secrets.get(client.secretId, { onFallback });
    this.#checkClientId(client, cached);
    const rejected = (err: unknown) => err instanceof BrokerError && err.reason === 'upstream_invalid_client';
    try {
      return await this.#withRetries(ctx, cached);
    } catch (err) {
      if (!rejected(err)) throw err;
      let lastRejection = err as BrokerError;
      const current = await this.secrets.get(client.secretId, { fresh: true, onFallback });
      const candidates: { credentials: ClientCredentials; label: string }[] = [];
      if (current.versionId !== cached.versionId)
        candidates.push({ credentials: current, label: 'the new current version' });
      else {
        const previous = await this.secrets.previous(client.secretId);
        if (previous && previous.versionId !== cached.versionId)
          candidates.push({ credentials: previous, label: 'AWSPREVIOUS' });
      }
      for (const { credentials, label } of candidates) {
        this.#checkClientId(client, credentials);
        log.warn('token endpoint rejected the cached client credentials; trying another secret version', {
          ...keyFields,
          secretVersion: label,
        });
        try {
          const grant = await this.#withRetries(ctx, credentials);
          this.secrets.remember(credentials);
          return grant;
        } catch (retryErr) {
          if (!rejected(retryErr)) throw retryErr;
          lastRejection = retryErr as BrokerError;
        }
      }
      const tried =
        candidates.length === 0
          ? 'its only version'
          : `its current and ${candidates[0]!.label === 'AWSPREVIOUS' ? 'previous' : 'new'} versions`;
      throw new UpstreamError(`${lastRejection.message}; tried ${tried}`, 'upstream_invalid_client');
    }
  }

  /** One credential set: retries on network errors, timeouts, 429 and 5xx, all inside the deadline. */
  async #withRetries(ctx: FetchRequest, credentials: ClientCredentials): Promise<IssuedToken> {
    const { client, scopes, deadlineMs, log, keyFields } = ctx;
    for (let attempt = 1; ; attempt++) {
      const budgetMs = Math.min(this.options.timeoutMs, deadlineMs - this.clock.nowMs());
      if (budgetMs < MIN_REQUEST_BUDGET_MS) {
        throw new UnavailableError('no time left in this invocation to call the token endpoint', 'deadline_exceeded');
      }
      const startedMs = this.clock.nowMs();
      ctx.metrics?.count('UpstreamRequests');
      try {
        const grant = await this.#request(
          client.tokenUrl,
          credentials,
          { clientName: client.name, secretId: client.secretId, scopes },
          budgetMs,
          this.clock,
        );
        ctx.metrics?.record('UpstreamLatency', this.clock.nowMs() - startedMs, 'Milliseconds');
        return grant;
      } catch (err) {
        const reason = err instanceof BrokerError ? err.reason : 'unexpected';
        ctx.metrics?.count('UpstreamErrors');
        ctx.metrics?.count(`UpstreamError.${reason}`);
        if (!isRetryable(err)) throw err;
        const failure = err as UnavailableError;
        const delayMs = retryDelayMs(attempt, this.#random(), failure.retryAfterMs);
        const outOfTime = this.clock.nowMs() + delayMs + MIN_REQUEST_BUDGET_MS > deadlineMs;
        if (attempt >= this.options.maxAttempts || outOfTime) {
          const why =
            outOfTime && attempt < this.options.maxAttempts
              ? 'no time left for another attempt'
              : `${attempt} attempts`;
          ctx.degraded('retries_exhausted', failure.reason, { attempts: attempt });
          throw new UnavailableError(`${failure.message} (${why})`, failure.reason, {
            cause: err,
            retryAfterMs: failure.retryAfterMs,
          });
        }
        log.info('token request failed, retrying', { ...keyFields, reason: failure.reason, attempt, delayMs });
        await ctx.beforeRetry?.();
        await this.#sleep(delayMs);
      }
    }
  }

  #checkClientId(client: ClientConfig, credentials: ClientCredentials): void {
    if (client.clientId !== undefined && credentials.clientId !== client.clientId) {
      throw new ConfigurationError(
        `secret ${quote(client.secretId, 256)} holds another client_id than ${quote(client.name)} is configured with`,
        'secret_client_mismatch',
      );
    }
  }
}
