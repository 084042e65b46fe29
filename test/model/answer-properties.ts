/**
 * The properties of what a request ends with, checked when it ends: a token the endpoint issued for the asked scope
 * set, unexpired, with at least the asked minTtlSeconds (the broker's documented cap: a quarter of the token's
 * lifetime) or, marked stale, at least STALE_TOKEN_MIN_TTL_SEC; never the token the caller reported rejected; or a
 * typed BrokerError; in either case before the deadline; and no error at all when the world has been healthy for
 * longer than any lease and request lasts.
 */

import { FORCE_REFRESH_BUDGET } from '../../functions/lib/cache/lease/force-budget';
import { FORCE_REFRESH_LIMITED } from '../../functions/lib/cache/lease/forced-refresh';
import { CLOCK_SKEW_MS } from '../../functions/lib/cache/lease/lease-rules';
import type { TokenAnswer } from '../../functions/lib/domain/answer';
import { BrokerError } from '../../functions/lib/shared/errors';
import { type FakeEndpoint, TOKEN_LIFETIME_SEC } from './endpoint';
import { keyLabel, MAX_TABLE_LATENCY_MS } from './model-table';
import type { Violations } from './violations';

/** Table calls made after a request's last look at the time (a lease release, a token write) may end it later. */
export const DEADLINE_SLACK_MS = 4 * MAX_TABLE_LATENCY_MS;

/** What a caller asking for `minTtlSec` is owed (the broker caps the ask at a quarter of the token's lifetime). */
export const owedRemainingSec = (minTtlSec: number): number =>
  Math.max(1, Math.min(minTtlSec, Math.floor(TOKEN_LIFETIME_SEC * 0.25)));

export interface ModelRequest {
  id: number;
  who: { name: string; nowMs(): number; crashed: boolean };
  kind: 'get' | 'forced' | 'prewarm';
  /** The cache key and scope set asked (none for a prewarm run). */
  key?: string;
  scopes?: string;
  minTtlSec: number;
  /** The access token the caller reported rejected (a forced refresh with a fingerprint). */
  rejected?: string;
  budgetMs: number;
  deadlineMs: number;
  startTrueMs: number;
  startClockMs: number;
  /** Another request of its container for the same key was running when it started (it may share its flight). */
  joined: boolean;
  done: boolean;
  /** The world was healthy long before it started and all along (set by the world). */
  healthy: boolean;
  /** Already reported running past its deadline. */
  late?: boolean;
}

export class AnswerProperties {
  constructor(
    private readonly violations: Violations,
    private readonly endpoint: FakeEndpoint,
    private readonly staleFloorSec: number,
  ) {}

  answered(req: ModelRequest, answer: TokenAnswer, trueMs: number): void {
    const clockMs = req.who.nowMs();
    const what = `r${req.id} (${req.who.name}, ${req.kind} ${req.scopes}, minTtl ${req.minTtlSec})`;
    const issued = this.endpoint.issued.get(answer.access_token);
    if (!issued || issued.scopes !== req.scopes) {
      this.violations.add('foreignToken', `${what} was answered ${answer.access_token}`);
      return;
    }
    const slackSec = DEADLINE_SLACK_MS / 1000;
    const believedSec = Date.parse(answer.expires_at) / 1000 - clockMs / 1000;
    const trueSec = (issued.issuedTrueMs + TOKEN_LIFETIME_SEC * 1000 - trueMs) / 1000;
    const owedSec = answer.stale ? this.staleFloorSec : owedRemainingSec(req.minTtlSec);
    // The broker dates a token from when it sent the request, on its clock: it may believe up to the skew more.
    if (believedSec < owedSec - slackSec || trueSec < owedSec - CLOCK_SKEW_MS / 1000 - slackSec || trueSec <= 0) {
      // Known issue: the token answered the request when it began, and the request spent its time refreshing ahead.
      const atStartSec = Date.parse(answer.expires_at) / 1000 - req.startClockMs / 1000;
      this.violations.add(
        'tooShortLived',
        `${what} was answered ${answer.access_token}${answer.stale ? ' (stale)' : ''} with ${believedSec.toFixed(3)} s left ` +
          `on its clock (${trueSec.toFixed(3)} s in truth), owed ${owedSec} s; it had ${atStartSec.toFixed(3)} s left when the request began`,
        !answer.stale && atStartSec >= owedSec ? 'refreshOutlastsMinTtl' : undefined,
      );
    }
    if (req.rejected !== undefined && answer.access_token === req.rejected)
      this.violations.add('rejectedServed', `${what} reported ${req.rejected} rejected and was answered it again`);
    this.#deadline(req, what, clockMs);
  }

  failed(req: ModelRequest, err: unknown): void {
    const what = `r${req.id} (${req.who.name}, ${req.kind} ${req.scopes ?? ''})`;
    if (!(err instanceof BrokerError)) {
      const name = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      this.violations.add('untypedError', `${what} threw ${name}`);
      return;
    }
    // The two bounds on forced refreshes (per key; per caller and client across keys) are refusals by design.
    if (req.healthy && err.reason !== FORCE_REFRESH_LIMITED && err.reason !== FORCE_REFRESH_BUDGET)
      this.violations.add(
        'refusedWhileHealthy',
        `${what} failed with ${err.reason}: ${err.message}`,
        req.joined ? 'flightDeadline' : undefined,
      );
    this.#deadline(req, what, req.who.nowMs());
  }

  prewarmed(req: ModelRequest, outcome: { results: { outcome: string; reason?: string }[] } | { threw: unknown }) {
    const what = `prewarm run r${req.id} (${req.who.name})`;
    if ('threw' in outcome) {
      this.violations.add('prewarmThrew', `${what} threw ${String(outcome.threw)}`);
      return;
    }
    if (req.healthy) {
      const failed = outcome.results.find((r) => r.outcome === 'failed');
      if (failed) this.violations.add('refusedWhileHealthy', `${what} failed a set: ${failed.reason}`);
    }
    this.#deadline(req, what, req.who.nowMs());
  }

  /** While it runs: a request still running past its deadline (and the slack) is reported at once. */
  running(req: ModelRequest): void {
    const clockMs = req.who.nowMs();
    if (clockMs > req.deadlineMs + DEADLINE_SLACK_MS && !req.late) {
      req.late = true;
      this.violations.add(
        'pastDeadline',
        `r${req.id} (${req.who.name}, ${req.kind} ${req.key ? keyLabel(req.key) : ''}) is still running ${clockMs - req.deadlineMs} ms after its deadline`,
        req.joined ? 'flightDeadline' : undefined,
      );
    }
  }

  #deadline(req: ModelRequest, what: string, clockMs: number): void {
    if (clockMs > req.deadlineMs + DEADLINE_SLACK_MS && !req.late)
      this.violations.add(
        'pastDeadline',
        `${what} ended ${clockMs - req.deadlineMs} ms after its deadline`,
        req.joined ? 'flightDeadline' : undefined,
      );
  }
}
