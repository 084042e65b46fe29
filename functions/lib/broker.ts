import { cacheKeyFor, tokenFingerprint } from './cache-key';
import type { Clock } from './clock';
import type { ClientConfig } from './config';
import { BrokerError, errorLogFields } from './errors';
import type { Logger } from './logger';
import type { MemoryTokenCache } from './memory-cache';
import type { KeyedRequest, Outcome, PrewarmOutcome, RefreshLease, TokenSource } from './refresh-lease';
import type { SecretSource } from './secret-source';
import type { TokenFetcher } from './token-fetcher';
import { type TokenAnswer, isRefreshDue, isServable, toTokenAnswer } from './token-lifetime';
import type { TokenRequest } from './token-request';
import type { TokenStore } from './token-store';

export type { TokenSource } from './refresh-lease';

export interface BrokerDeps {
  clock: Clock;
  secrets: SecretSource;
  store: TokenStore;
  memory: MemoryTokenCache;
  fetcher: TokenFetcher;
  /** Cross-container single flight. Absent: a plain two-layer cache (only the benchmark's naive baseline). */
  lease: RefreshLease | undefined;
  log: Logger;
}

export interface CallOptions {
  /** Epoch ms by which the answer must be ready (the Lambda's remaining time less a margin). */
  deadlineMs: number;
  log?: Logger;
}

/**
 * The token path: memory, then the table, then the token endpoint under the refresh lease. Concurrent misses
 * for one key in this container share one fetch; past its refresh point a token is refreshed by one request
 * while the others are served it. If the table is unreachable, the broker works from memory and the endpoint.
 */
export class TokenBroker {
  /** In this container: the one miss (or refresh ahead) in flight per key. */
  readonly #misses = new Map<string, Promise<Outcome>>();
  readonly #refreshes = new Map<string, Promise<Outcome>>();

  constructor(private readonly deps: BrokerDeps) {}

  async getToken(request: TokenRequest, options: CallOptions): Promise<{ answer: TokenAnswer; source: TokenSource }> {
    const { clock, memory } = this.deps;
    const log = options.log ?? this.deps.log;
    const req: KeyedRequest = { ...request, cacheKey: await this.#cacheKey(request.client, request.scopes) };
    const served = ({ token, source }: Outcome) => {
      log.info('token served', {
        client: req.client.name,
        scopes: req.scopes,
        source,
        cacheKey: req.cacheKey.slice(0, 15),
        tokenFingerprint: tokenFingerprint(token.accessToken),
        expiresAtEpochSec: token.expiresAtEpochSec,
      });
      return { answer: toTokenAnswer(token, req.client.name, clock.nowMs()), source };
    };

    const nowMs = clock.nowMs();
    const inMemory = memory.get(req.cacheKey, nowMs);
    if (inMemory && isServable(inMemory, nowMs, req.minTtlSec)) {
      return served(await this.#maybeRefreshAhead(req, { token: inMemory, source: 'memory' }, options.deadlineMs, log));
    }
    const stored = await this.#readTable(req, log);
    if (stored && isServable(stored, clock.nowMs(), req.minTtlSec)) {
      memory.set(req.cacheKey, stored);
      return served(await this.#maybeRefreshAhead(req, { token: stored, source: 'table' }, options.deadlineMs, log));
    }
    return served(await this.#once(this.#misses, req.cacheKey, () => this.#miss(req, options.deadlineMs, log)));
  }

  /** Prewarm: refresh one scope set if it is missing or past its refresh point. */
  async prewarm(client: ClientConfig, scopes: readonly string[], deadlineMs: number, log: Logger): Promise<PrewarmOutcome> {
    if (!this.deps.lease) throw new Error('prewarming needs the refresh lease');
    const req: KeyedRequest = { client, scopes, minTtlSec: 0, cacheKey: await this.#cacheKey(client, scopes) };
    return this.deps.lease.refreshIfDue(req, deadlineMs, log);
  }

  async #cacheKey(client: ClientConfig, scopes: readonly string[]): Promise<string> {
    const clientId = client.clientId ?? (await this.deps.secrets.get(client.secretId)).clientId;
    return cacheKeyFor(client.tokenUrl, clientId, scopes);
  }

  async #readTable(req: KeyedRequest, log: Logger) {
    try {
      const entry = await this.deps.store.read(req.cacheKey);
      if (entry.unusable) log.warn('cached item unusable, treated as a miss', { cacheKey: req.cacheKey.slice(0, 15), reason: entry.unusable });
      return entry.token;
    } catch (err) {
      log.warn('token table unavailable, treated as a miss', { client: req.client.name, scopes: req.scopes, ...errorLogFields(err) });
      return undefined;
    }
  }

  #maybeRefreshAhead(req: KeyedRequest, current: Outcome, deadlineMs: number, log: Logger): Promise<Outcome> | Outcome {
    const { lease } = this.deps;
    if (!lease || !isRefreshDue(current.token, this.deps.clock.nowMs())) return current;
    // One refresh per key in this container; other requests meanwhile get the current token at once.
    if (this.#refreshes.has(req.cacheKey)) return current;
    return this.#once(this.#refreshes, req.cacheKey, () => lease.refreshAhead(req, current, deadlineMs, log));
  }

  async #miss(req: KeyedRequest, deadlineMs: number, log: Logger): Promise<Outcome> {
    const { lease } = this.deps;
    if (lease) {
      try {
        return await lease.obtain(req, deadlineMs, log);
      } catch (err) {
        if (!(err instanceof BrokerError && err.reason === 'table_unavailable')) throw err;
        log.warn('token table unavailable: fetching without the refresh lease', { client: req.client.name, scopes: req.scopes, ...errorLogFields(err) });
        return this.#fetchDirectly(req, deadlineMs, log, false);
      }
    }
    return this.#fetchDirectly(req, deadlineMs, log, true);
  }

  async #fetchDirectly(req: KeyedRequest, deadlineMs: number, log: Logger, store: boolean): Promise<Outcome> {
    const token = await this.deps.fetcher.fetch(req.client, req.scopes, deadlineMs, log);
    this.deps.memory.set(req.cacheKey, token);
    if (store) {
      await this.deps.store
        .writeToken(req.cacheKey, token, req.client.name)
        .catch((err: unknown) => log.warn('token not written to the table', errorLogFields(err)));
    }
    return { token, source: 'endpoint' };
  }

  /** Runs `work` once per key at a time; concurrent callers share its promise, and failures are not kept. */
  #once(inFlight: Map<string, Promise<Outcome>>, key: string, work: () => Promise<Outcome>): Promise<Outcome> {
    let pending = inFlight.get(key);
    if (!pending) {
      pending = work().finally(() => inFlight.delete(key));
      inFlight.set(key, pending);
    }
    return pending;
  }
}
