/**
 * TokenBrokerClient: LimitRail tokens from the broker, kept in memory per client object until `marginSec` before
 * they expire, one broker call per key however many requests ask at once (single flight: the in-flight promise is
 * shared and dropped when it settles), `temporarily_unavailable` retried with capped exponential backoff and full
 * jitter within `deadlineMs` (which also bounds each attempt: the transport's signal aborts when it passes, and the
 * attempt is given up whether or not the transport heeds it), and one forced refresh after LimitRail rejects a token
 * with 401.
 *
 * Time: every decision (a token's reuse, the deadline) runs on the monotonic clock (`performance.now()`), which a
 * wall-clock step (NTP, a manual change) does not move. A kept token is also dropped once the wall clock says its
 * time is up, so a process that was suspended (the monotonic clock stands still meanwhile) does not reuse it either.
 */
import { createHash } from 'node:crypto';

import { type TokenAnswer, type TokenRequest, tokenAnswerOf } from './answer.js';
import { BROKER_ERRORS, TokenBrokerError } from './errors.js';
import {
  assertDeadlineMs,
  assertMarginSec,
  backoffDelayMs,
  cacheKeyOf,
  canonicalScopes,
  DEFAULT_DEADLINE_MS,
  DEFAULT_MARGIN_SEC,
  fitsBeforeDeadline,
  minTtlSecondsFor,
  refreshAtMs,
} from './policy.js';
import type { Transport } from './transports.js';

export interface TokenBrokerClientOptions {
  /** Stop reusing a token this many seconds before it expires (default 60). */
  marginSec?: number;
  /**
   * Give up this long after a request began (default 10 000 ms): no retry of `temporarily_unavailable` starts later,
   * and an attempt still waiting then is given up (its transport's signal aborted) as `temporarily_unavailable`.
   */
  deadlineMs?: number;
}

export interface TokenOptions {
  /** The broker's client (upstream) name; needed only when the broker has more than one. */
  client?: string;
}

interface Cached {
  token: string;
  /** On the monotonic clock (`performance.now()`). */
  refreshAtMonotonicMs: number;
  /** The same instant on the wall clock (`Date.now()`): a second bound, for a process that was suspended. */
  refreshAtWallMs: number;
}

/** The clock of every decision here: monotonic, so a wall-clock step back never makes a token look fresh. */
const monotonicNowMs = (): number => performance.now();

const sha256Hex = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');
const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms));

export class TokenBrokerClient {
  // Private fields: neither util.inspect nor JSON.stringify shows a token kept here.
  readonly #transport: Transport;
  readonly #marginSec: number;
  readonly #deadlineMs: number;
  readonly #cache = new Map<string, Cached>();
  readonly #flights = new Map<string, Promise<string>>();

  constructor(transport: Transport, options: TokenBrokerClientOptions = {}) {
    if (typeof transport !== 'function')
      throw new TypeError('"transport" must be invokeTransport(...) or urlTransport(...)');
    this.#transport = transport;
    this.#marginSec = assertMarginSec(options.marginSec ?? DEFAULT_MARGIN_SEC);
    this.#deadlineMs = assertDeadlineMs(options.deadlineMs ?? DEFAULT_DEADLINE_MS);
  }

  /** A bearer token for these scopes: from memory while it has more than `marginSec` left, else from the broker. */
  async token(scopes: readonly string[], options: TokenOptions = {}): Promise<string> {
    const key = cacheKeyOf(options.client, scopes);
    const cached = this.#fresh(key);
    if (cached !== undefined) return cached;
    return this.#flight(key, () =>
      this.#ask(key, { ...this.#base(scopes, options), minTtlSeconds: minTtlSecondsFor(this.#marginSec) }),
    );
  }

  /**
   * After LimitRail answered 401 to `rejected`: drops it and asks the broker for a token that is not it
   * (`forceRefresh` with the rejected token's SHA-256). If another request already replaced it, that token is
   * answered without a broker call; concurrent calls for the same rejected token share one. Call it once per
   * rejected request: retry that request once with the new token, never in a loop.
   */
  async tokenAfter401(scopes: readonly string[], rejected: string, options: TokenOptions = {}): Promise<string> {
    if (typeof rejected !== 'string' || rejected === '')
      throw new TypeError('"rejected" must be the token LimitRail rejected');
    const key = cacheKeyOf(options.client, scopes);
    const rejectedTokenSha256 = sha256Hex(rejected);
    const cached = this.#fresh(key);
    if (cached !== undefined && cached !== rejected) return cached;
    if (cached === rejected) this.#cache.delete(key);
    return this.#flight(`${key} ${rejectedTokenSha256}`, () =>
      this.#ask(key, { ...this.#base(scopes, options), forceRefresh: true, rejectedTokenSha256 }),
    );
  }

  /** Forgets every cached token (they stay valid upstream; the next request asks the broker). */
  clear(): void {
    this.#cache.clear();
  }

  #base(scopes: readonly string[], options: TokenOptions): TokenRequest {
    return { scopes: canonicalScopes(scopes), ...(options.client === undefined ? {} : { client: options.client }) };
  }

  #fresh(key: string): string | undefined {
    const cached = this.#cache.get(key);
    if (!cached) return undefined;
    if (monotonicNowMs() < cached.refreshAtMonotonicMs && Date.now() < cached.refreshAtWallMs) return cached.token;
    this.#cache.delete(key);
    return undefined;
  }

  /** Single flight: one promise per flight key while it runs, dropped when it settles (success or failure). */
  #flight(flightKey: string, run: () => Promise<string>): Promise<string> {
    const running = this.#flights.get(flightKey);
    if (running) return running;
    const flight = run().finally(() => this.#flights.delete(flightKey));
    this.#flights.set(flightKey, flight);
    return flight;
  }

  /** One broker call, retried on `temporarily_unavailable` while the next attempt fits before the deadline. */
  async #ask(key: string, request: TokenRequest): Promise<string> {
    const deadlineAtMs = monotonicNowMs() + this.#deadlineMs;
    for (let attempt = 1; ; attempt += 1) {
      const askedAtMs = monotonicNowMs();
      const askedAtWallMs = Date.now();
      let answer: TokenAnswer;
      try {
        answer = tokenAnswerOf(await this.#attempt(request, deadlineAtMs));
      } catch (err) {
        if (!(err instanceof TokenBrokerError) || !err.retryable) throw err;
        const delayMs = backoffDelayMs(attempt, Math.random(), err.retryAfterSeconds);
        if (!fitsBeforeDeadline(monotonicNowMs(), delayMs, deadlineAtMs)) throw err;
        await sleep(delayMs);
        continue;
      }
      const refreshAt = refreshAtMs(askedAtMs, answer.expires_in, this.#marginSec);
      // A token with less than the margin left (a `stale` answer while the endpoint fails) is used once, not kept.
      if (refreshAt > monotonicNowMs()) {
        this.#cache.set(key, {
          token: answer.access_token,
          refreshAtMonotonicMs: refreshAt,
          refreshAtWallMs: refreshAtMs(askedAtWallMs, answer.expires_in, this.#marginSec),
        });
      }
      return answer.access_token;
    }
  }

  /**
   * One transport call, bounded by the deadline: when it passes, the transport's signal is aborted and the call is
   * given up as `temporarily_unavailable` (a transport that ignores the signal is left to finish unheard).
   */
  async #attempt(request: TokenRequest, deadlineAtMs: number): Promise<unknown> {
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => {
          const err = new TokenBrokerError(
            BROKER_ERRORS.temporarilyUnavailable,
            503,
            `the token broker gave no answer within the deadline (${this.#deadlineMs} ms)`,
          );
          controller.abort(err);
          reject(err);
        },
        Math.max(0, deadlineAtMs - monotonicNowMs()),
      );
    });
    try {
      return await Promise.race([this.#transport(request, { signal: controller.signal }), late]);
    } finally {
      clearTimeout(timer);
    }
  }
}
