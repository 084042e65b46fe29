/**
 * The benchmark's baseline: a two-layer cache (memory, then the table) without the refresh lease, as a token
 * broker written without cross-container single flight would be. Every miss fetches and writes; no refresh ahead.
 * It implements the broker's LeaseProtocol: the bench assembles the same TokenBroker over it from a runtime's parts.
 */
import { type BrokerDeps, TokenBroker } from '../functions/lib/broker/token-broker';
import type { KeyedRequest } from '../functions/lib/domain/token-request';
import type { LeaseProtocol, Outcome, PrewarmOutcome } from '../functions/lib/ports';
import type { Runtime } from '../functions/lib/runtime';
import { errorLogFields } from '../functions/lib/shared/errors';

export class NaiveCache implements LeaseProtocol {
  constructor(private readonly deps: Pick<BrokerDeps, 'store' | 'fetcher' | 'memory'>) {}

  async obtain(req: KeyedRequest): Promise<Outcome> {
    const token = await this.deps.fetcher.fetch(req);
    this.deps.memory.set(req.cacheKey, token);
    await this.deps.store
      .writeToken(req.cacheKey, token, req.client.name)
      .catch((err: unknown) =>
        req.log.warn('token not written to the table', { ...req.keyFields, ...errorLogFields(err) }),
      );
    return { token, source: 'endpoint' };
  }

  async refreshAhead(_req: KeyedRequest, current: Outcome): Promise<Outcome> {
    return current;
  }

  async refreshIfDue(req: KeyedRequest): Promise<PrewarmOutcome> {
    await this.obtain(req);
    return 'refreshed';
  }
}

/** The same runtime with its broker assembled over the naive cache instead of the refresh lease. */
export const withNaiveCache = (runtime: Runtime): Runtime => ({
  ...runtime,
  broker: new TokenBroker({ ...runtime.parts, lease: new NaiveCache(runtime.parts) }),
});
