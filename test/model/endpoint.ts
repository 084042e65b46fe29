/**
 * The fake LimitRail token endpoint of the model: EndpointTokenProvider's `request` port (the HTTP exchange), so the
 * real provider's retries, time budget and lease renewals run over it. It counts every request that reached it, issues
 * tokens that name their scope set, and can be slow, fail, throttle or hang (the client's timeout then ends the
 * attempt, as AbortSignal.timeout does).
 */
import { UnavailableError } from '../../functions/lib/shared/errors';
import type { ClientAuthentication } from '../../functions/lib/upstream/client-auth';
import type { IssuedToken, TokenRequestContext } from '../../functions/lib/upstream/token-endpoint';
import { type Actor, pick, type Sim } from './sim';
import type { Trace } from './trace';

/** Every token the endpoint issues lives this long: refreshed ahead at 225 s, minTtl capped at 75 s. */
export const TOKEN_LIFETIME_SEC = 300;

export const ENDPOINT_MODES = ['ok', 'slow', 'failing', 'rate_limited', 'hanging'] as const;
export type EndpointMode = (typeof ENDPOINT_MODES)[number];

/** Latencies of an answer (ms), by mode. */
const LATENCY_MS: Record<EndpointMode, readonly number[]> = {
  ok: [0, 0, 3, 40, 300, 1_500],
  slow: [2_000, 4_500, 6_000, 9_000],
  failing: [0, 30],
  rate_limited: [0, 30],
  hanging: [Number.POSITIVE_INFINITY],
};

export interface IssuedRecord {
  scopes: string;
  /** True time the endpoint issued it: it lives TOKEN_LIFETIME_SEC from then. */
  issuedTrueMs: number;
}

export interface UpstreamRequest {
  trueMs: number;
  who: string;
  scopes: string;
}

export class FakeEndpoint {
  mode: EndpointMode = 'ok';
  readonly requests: UpstreamRequest[] = [];
  readonly issued = new Map<string, IssuedRecord>();

  constructor(
    private readonly sim: Sim,
    private readonly trace: Trace,
    private readonly random: () => number,
  ) {}

  /** The request port of one container's EndpointTokenProvider. */
  requestFor(actor: Actor) {
    return async (
      _tokenUrl: string,
      _auth: ClientAuthentication,
      ctx: TokenRequestContext,
      timeoutMs: number,
    ): Promise<IssuedToken> => {
      const scopes = ctx.scopes.join(' ');
      this.requests.push({ trueMs: this.sim.nowMs, who: actor.name, scopes });
      this.trace.add(this.sim.nowMs, actor, `endpoint request #${this.requests.length} for ${scopes} (${this.mode})`);
      const latencyMs = pick(this.random, LATENCY_MS[this.mode]);
      if (latencyMs >= timeoutMs) {
        await this.sim.sleep(actor, timeoutMs);
        this.trace.add(this.sim.nowMs, actor, `endpoint request for ${scopes} timed out after ${timeoutMs} ms`);
        throw new UnavailableError(`the token endpoint did not answer within ${timeoutMs} ms`, 'upstream_timeout');
      }
      if (latencyMs > 0) await this.sim.sleep(actor, latencyMs);
      await this.sim.point(actor, `${actor.name} endpoint answer`);
      return this.#answer(actor, scopes, ctx);
    };
  }

  #answer(actor: Actor, scopes: string, ctx: TokenRequestContext): IssuedToken {
    if (this.mode === 'failing' || this.mode === 'rate_limited') {
      this.trace.add(this.sim.nowMs, actor, `endpoint answers ${this.mode === 'failing' ? 503 : 429} for ${scopes}`);
      if (this.mode === 'failing')
        throw new UnavailableError('the token endpoint failed (HTTP 503)', 'upstream_unavailable');
      throw new UnavailableError('the token endpoint is rate limiting (HTTP 429)', 'upstream_rate_limited', {
        retryAfterMs: 1_000,
      });
    }
    const accessToken = `${scopes.replaceAll(' ', '+')}~${this.issued.size + 1}`;
    this.issued.set(accessToken, { scopes, issuedTrueMs: this.sim.nowMs });
    this.trace.add(this.sim.nowMs, actor, `endpoint issues ${accessToken}`);
    return { accessToken, expiresInSec: TOKEN_LIFETIME_SEC, scopes: [...ctx.scopes] };
  }
}
