/**
 * One token fetch from the token endpoint (the way out): the client's authentication (its secret, following a
 * rotation; or an assertion signed by its KMS key), the request with retries inside the invocation's time, the
 * token's lifetime, and recognizing a re-issued token.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { tokenFingerprint } from '../domain/cache-key';
import { type CachedToken, lifetimeOf } from '../domain/cached-token';
import type { ClientCredentials } from '../domain/client-credentials';
import type { ClientConfig, PrivateKeyJwtAuth, SecretAuth } from '../domain/settings';
import type { AssertionSigner, CredentialSource, FetchRequest, TokenProvider } from '../ports';
import { fullJitterDelayMs } from '../shared/backoff';
import { type Clock, toEpochSec } from '../shared/clock';
import {
  BrokerError,
  ConfigurationError,
  errorLogFields,
  quote,
  type Reason,
  UnavailableError,
  UpstreamError,
} from '../shared/errors';
import { type ClientAuthentication, privateKeyJwt, secretAuthentication } from './client-auth';
import { requestToken as httpRequestToken, type IssuedToken } from './token-endpoint';

/** Below this much time left before the deadline, no token request is started. */
export const MIN_REQUEST_BUDGET_MS = 100;
/** Token request retries: 100 ms doubling to 2 s, full jitter. */
const RETRY = { baseMs: 100, capMs: 2_000 } as const;

/** Failures worth another attempt: network errors, timeouts, 429 and 5xx; KMS throttling. Never another 4xx. */
const RETRYABLE = new Set<Reason>([
  'upstream_unreachable',
  'upstream_timeout',
  'upstream_rate_limited',
  'upstream_unavailable',
  'signing_unavailable',
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
  /** Signs the assertions of private_key_jwt clients (KmsAssertionSigner); without it such a client cannot fetch. */
  signer?: AssertionSigner;
}

/** How one attempt authenticates, and how an invalid_client answer names what it rejected. */
interface Authenticator {
  authenticate(): Promise<ClientAuthentication> | ClientAuthentication;
  credentials: string;
}

/**
 * Fetches one token from the token endpoint: the client's authentication (its secret, following a rotation; or a
 * client assertion signed by its KMS key), the request with retries inside the time left, and the token's lifetime.
 * A refresh that gets back the token it was meant to replace marks it re-issued.
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
    const { auth } = ctx.client;
    const grant =
      auth.method === 'private_key_jwt' ? await this.#withAssertion(ctx, auth) : await this.#withRotation(ctx, auth);
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
  async #withRotation(ctx: FetchRequest, auth: SecretAuth): Promise<IssuedToken> {
    const { client, log, keyFields } = ctx;
    const { secretId } = auth;
    const onFallback = (err: BrokerError) => ctx.degraded('secret_fallback', err.reason, { detail: err.message });
    const cached = await this.secrets.get(secretId, { onFallback });
    this.#checkClientId(client, secretId, cached);
    const rejected = (err: unknown) => err instanceof BrokerError && err.reason === 'upstream_invalid_client';
    const method = auth.method === 'client_secret_basic' ? ' (client_secret_basic)' : '';
    const withSecret = (credentials: ClientCredentials): Authenticator => ({
      authenticate: () => secretAuthentication(auth, credentials),
      credentials: `the client credentials${method} in secret ${quote(secretId, 256)}`,
    });
    try {
      return await this.#withRetries(ctx, withSecret(cached));
    } catch (err) {
      if (!rejected(err)) throw err;
      let lastRejection = err as BrokerError;
      const current = await this.secrets.get(secretId, { fresh: true, onFallback });
      const candidates: { credentials: ClientCredentials; label: string }[] = [];
      if (current.versionId !== cached.versionId)
        candidates.push({ credentials: current, label: 'the new current version' });
      else {
        const previous = await this.secrets.previous(secretId);
        if (previous && previous.versionId !== cached.versionId)
          candidates.push({ credentials: previous, label: 'AWSPREVIOUS' });
      }
      for (const { credentials, label } of candidates) {
        this.#checkClientId(client, secretId, credentials);
        log.warn('token endpoint rejected the cached client credentials; trying another secret version', {
          ...keyFields,
          secretVersion: label,
        });
        try {
          const grant = await this.#withRetries(ctx, withSecret(credentials));
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

  /**
   * private_key_jwt: every attempt signs a new assertion with the client's first signing key (a new `jti`, so a
   * retry never replays one). The endpoint refusing it (invalid_client) is final, like a rejected secret: no retry.
   */
  async #withAssertion(ctx: FetchRequest, auth: PrivateKeyJwtAuth): Promise<IssuedToken> {
    const { client, log, keyFields } = ctx;
    const { signer } = this.options;
    if (!signer)
      throw new ConfigurationError(`no signer for private_key_jwt client ${quote(client.name)}`, 'config_invalid');
    const keyId = auth.signingKeyIds[0]!;
    const kid: { value?: string } = {};
    const credentials = `the client assertion (private_key_jwt) of client ${quote(client.name)} signed by key ${quote(keyId, 256)}`;
    try {
      return await this.#withRetries(ctx, {
        credentials,
        authenticate: () =>
          this.#signed(ctx, async () => {
            const key = await signer.signingKey(keyId, auth.signingAlgorithm);
            kid.value = key.kid;
            return privateKeyJwt(client.clientId!, auth.assertionAudience, key, signer, toEpochSec(this.clock.nowMs()));
          }),
      });
    } catch (err) {
      if (err instanceof BrokerError && err.reason === 'upstream_invalid_client') {
        log.warn('token endpoint rejected the client authentication', {
          ...keyFields,
          authMethod: auth.method,
          signingKey: keyId,
          kid: kid.value,
        });
      }
      throw err;
    }
  }

  /** One assertion, counted: AssertionsSigned and SigningLatency, or SigningErrors and SigningError.<reason>. */
  async #signed(ctx: FetchRequest, sign: () => Promise<ClientAuthentication>): Promise<ClientAuthentication> {
    const startedMs = this.clock.nowMs();
    try {
      const auth = await sign();
      ctx.metrics?.count('AssertionsSigned');
      ctx.metrics?.record('SigningLatency', this.clock.nowMs() - startedMs, 'Milliseconds');
      return auth;
    } catch (err) {
      ctx.metrics?.count('SigningErrors');
      ctx.metrics?.count(`SigningError.${errorLogFields(err).reason}`);
      throw err;
    }
  }

  /**
   * One way of authenticating: retries on network errors, timeouts, 429 and 5xx, and on KMS throttling while
   * signing, all inside the deadline.
   */
  async #withRetries(ctx: FetchRequest, authenticator: Authenticator): Promise<IssuedToken> {
    const { client, scopes, deadlineMs, log, keyFields } = ctx;
    for (let attempt = 1; ; attempt++) {
      this.#checkBudget(deadlineMs);
      let sent = false;
      try {
        const auth = await authenticator.authenticate();
        const budgetMs = this.#checkBudget(deadlineMs);
        const startedMs = this.clock.nowMs();
        sent = true;
        ctx.metrics?.count('UpstreamRequests');
        const grant = await this.#request(
          client.tokenUrl,
          auth,
          { clientName: client.name, credentials: authenticator.credentials, scopes, tokenParams: client.tokenParams },
          budgetMs,
          this.clock,
        );
        ctx.metrics?.record('UpstreamLatency', this.clock.nowMs() - startedMs, 'Milliseconds');
        return grant;
      } catch (err) {
        const reason = err instanceof BrokerError ? err.reason : 'unexpected';
        if (sent) {
          ctx.metrics?.count('UpstreamErrors');
          ctx.metrics?.count(`UpstreamError.${reason}`);
        }
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

  /** The time one request may take: the endpoint timeout, or what is left before the deadline if that is less. */
  #checkBudget(deadlineMs: number): number {
    const budgetMs = Math.min(this.options.timeoutMs, deadlineMs - this.clock.nowMs());
    if (budgetMs < MIN_REQUEST_BUDGET_MS) {
      throw new UnavailableError('no time left in this invocation to call the token endpoint', 'deadline_exceeded');
    }
    return budgetMs;
  }

  #checkClientId(client: ClientConfig, secretId: string, credentials: ClientCredentials): void {
    if (client.clientId !== undefined && credentials.clientId !== client.clientId) {
      throw new ConfigurationError(
        `secret ${quote(secretId, 256)} holds another client_id than ${quote(client.name)} is configured with`,
        'secret_client_mismatch',
      );
    }
  }
}
