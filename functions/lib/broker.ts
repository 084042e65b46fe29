import { cacheKeyFor, tokenFingerprint } from './cache-key';
import type { Clock } from './clock';
import type { BrokerConfig } from './config';
import { BrokerError, ConfigurationError, quote } from './errors';
import type { Logger } from './logger';
import type { MemoryTokenCache } from './memory-cache';
import type { SecretSource } from './secret-source';
import { requestToken as httpRequestToken } from './token-endpoint';
import { type CachedToken, type TokenAnswer, isServable, lifetimeOf, toTokenAnswer } from './token-lifetime';
import type { TokenRequest } from './token-request';
import type { TokenStore } from './token-store';

/** Where an answered token came from. */
export type TokenSource = 'memory' | 'table' | 'endpoint';

export interface BrokerDeps {
  config: BrokerConfig;
  clock: Clock;
  secrets: SecretSource;
  store: TokenStore;
  memory: MemoryTokenCache;
  log: Logger;
  requestToken?: typeof httpRequestToken;
}

/**
 * The token path: memory, then the table, then the token endpoint. Concurrent misses for one key in this
 * container share one fetch. Failures of the table degrade to a miss (logged); they never fail a request
 * the endpoint can still serve.
 */
export class TokenBroker {
  readonly #inFlight = new Map<string, Promise<CachedToken>>();
  readonly #requestToken: typeof httpRequestToken;

  constructor(private readonly deps: BrokerDeps) {
    this.#requestToken = deps.requestToken ?? httpRequestToken;
  }

  async getToken(request: TokenRequest, log: Logger = this.deps.log): Promise<{ answer: TokenAnswer; source: TokenSource }> {
    const { clock, memory, store } = this.deps;
    const { client, scopes, minTtlSec } = request;
    const clientId = client.clientId ?? (await this.deps.secrets.get(client.secretId)).clientId;
    const cacheKey = cacheKeyFor(client.tokenUrl, clientId, scopes);

    const answer = (token: CachedToken, source: TokenSource) => {
      log.info('token served', {
        client: client.name,
        scopes,
        source,
        cacheKey: cacheKey.slice(0, 15),
        tokenFingerprint: tokenFingerprint(token.accessToken),
        expiresAtEpochSec: token.expiresAtEpochSec,
      });
      return { answer: toTokenAnswer(token, client.name, clock.nowMs()), source };
    };

    const inMemory = memory.get(cacheKey, clock.nowMs());
    if (inMemory && isServable(inMemory, clock.nowMs(), minTtlSec)) return answer(inMemory, 'memory');

    const stored = await this.#readTable(cacheKey, log);
    if (stored && isServable(stored, clock.nowMs(), minTtlSec)) {
      memory.set(cacheKey, stored);
      return answer(stored, 'table');
    }

    let pending = this.#inFlight.get(cacheKey);
    if (!pending) {
      pending = this.#fetch(request, cacheKey, log).finally(() => this.#inFlight.delete(cacheKey));
      this.#inFlight.set(cacheKey, pending);
    }
    return answer(await pending, 'endpoint');
  }

  async #readTable(cacheKey: string, log: Logger): Promise<CachedToken | undefined> {
    try {
      const read = await this.deps.store.get(cacheKey);
      if (read.kind === 'unusable') log.warn('cached item unusable, treated as a miss', { cacheKey: cacheKey.slice(0, 15), reason: read.reason });
      return read.kind === 'hit' ? read.token : undefined;
    } catch (err) {
      log.warn('token table unavailable, treated as a miss', { reason: reasonOf(err), detail: messageOf(err) });
      return undefined;
    }
  }

  async #fetch(request: TokenRequest, cacheKey: string, log: Logger): Promise<CachedToken> {
    const { clock, config, memory, secrets, store } = this.deps;
    const { client, scopes } = request;
    const credentials = await secrets.get(client.secretId);
    if (client.clientId !== undefined && credentials.clientId !== client.clientId) {
      throw new ConfigurationError(
        `secret ${quote(client.secretId, 256)} holds another client_id than ${quote(client.name)} is configured with`,
        'secret_client_mismatch',
      );
    }
    const sentAtMs = clock.nowMs();
    const grant = await this.#requestToken(
      client.tokenUrl,
      credentials,
      { clientName: client.name, secretId: client.secretId, scopes },
      config.tokenEndpointTimeoutMs,
    );
    const token: CachedToken = { accessToken: grant.accessToken, scopes: grant.scopes, ...lifetimeOf(sentAtMs, grant.expiresInSec) };
    log.info('token fetched from the token endpoint', {
      client: client.name,
      scopes,
      latencyMs: clock.nowMs() - sentAtMs,
      expiresInSec: grant.expiresInSec,
      tokenFingerprint: tokenFingerprint(token.accessToken),
    });
    memory.set(cacheKey, token);
    try {
      await store.put(cacheKey, token, client.name);
    } catch (err) {
      log.warn('token not written to the table', { reason: reasonOf(err), detail: messageOf(err) });
    }
    return token;
  }
}

const reasonOf = (err: unknown): string => (err instanceof BrokerError ? err.reason : 'unexpected');
/** Broker errors carry only safe descriptions; anything else is described by its name. */
const messageOf = (err: unknown): string => (err instanceof BrokerError ? err.message : (err as Error)?.name ?? 'Error');
