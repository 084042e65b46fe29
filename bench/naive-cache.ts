/**
 * The benchmark's baseline: a two-layer cache (memory, then the table) without the refresh lease, as a token
 * broker written without cross-container single flight would be. Every miss fetches and writes; no refresh ahead.
 * It implements the broker's LeaseProtocol, so the same TokenBroker runs over it (createRuntime's `lease` override).
 */
import type { LeaseProtocol } from '../functions/lib/broker';
import { errorLogFields } from '../functions/lib/shared/errors';
import type { KeyedRequest, Outcome, PrewarmOutcome, RefreshLeaseDeps } from '../functions/lib/cache/refresh-lease';

export class NaiveCache implements LeaseProtocol {
  constructor(private readonly deps: RefreshLeaseDeps) {}

  async obtain(req: KeyedRequest): Promise<Outcome> {
    const token = await this.deps.fetcher.fetch(req);
    this.deps.memory.set(req.cacheKey, token);
    await this.deps.store
      .writeToken(req.cacheKey, token, req.client.name)
      .catch((err: unknown) => req.log.warn('token not written to the table', { ...req.keyFields, ...errorLogFields(err) }));
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
