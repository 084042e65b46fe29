/**
 * The properties of the lease protocol and the table, checked as each table call is applied, as each fetch starts,
 * and after every step. The rules are stated here on their own, in true time and each container's clock, not by
 * calling the code under test: a lease is the holder's until the taker's own clock has passed its end; one lease
 * leads to at most one fetch; a fetch while another container's fetch runs is allowed only once that one's lease ran
 * out (an overrun: its holder was slow or dead); a lease is never taken while the table holds a token not yet due,
 * unless to claim a forced refresh, which happens at most once per interval (less the clock skew).
 */
import { CLOCK_SKEW_MS } from '../../functions/lib/cache/lease/lease-rules';
import type { CachedToken } from '../../functions/lib/domain/cached-token';
import type { FetchRequest } from '../../functions/lib/ports';
import { sha256Hex } from '../../functions/lib/shared/hash';
import { type AppliedOp, keyLabel, type SharedTable, type TableUser } from './model-table';
import type { Violations } from './violations';

/** A container as the properties see it. */
export interface Observed extends TableUser {
  readonly skewMs: number;
  /** Requests of this container still running. */
  busy(): boolean;
  /** A table call failed for this container since `sinceTrueMs` (any key when `key` is undefined). */
  tableErrorSince(sinceTrueMs: number, key?: string): boolean;
  /** A call naming this lease owner failed: whether the lease was released is unknown to its holder. */
  ownerUncertain(owner: string): boolean;
}

/** One holder's time with the lease, from its take to its release, token write or takeover. */
interface Tenure {
  owner: string;
  who: Observed;
  key: string;
  forced: boolean;
  /** A token not yet due that the item held when this lease was taken (no fetch may follow). */
  freshAtTake: CachedToken | undefined;
  fetches: number;
  /** `known`: taken over by a known issue (KNOWN_ISSUES.pinnedByLatency), counted as an overrun. */
  end?: 'released' | 'written' | 'ran-out' | 'stolen' | 'known';
}

export interface Episode {
  who: Observed;
  key: string;
  tenure: Tenure | undefined;
  live: boolean;
}

export interface LeaseSettings {
  leaseDurationMs: number;
  forceRefreshIntervalMs: number;
}

const isDue = (token: CachedToken, clockMs: number): boolean => clockMs / 1000 >= token.refreshAtEpochSec;

export class LeaseProperties {
  readonly #tenures = new Map<string, Tenure>();
  /** Per container and key: its latest lease. */
  readonly #latest = new Map<Observed, Map<string, Tenure>>();
  readonly #episodes: Episode[] = [];
  /** Per key: the true time of the last forced claim's decision. */
  readonly #lastClaimTrueMs = new Map<string, number>();
  /** What the runs went through (the checker sums them: what a budget explored). */
  readonly seen = { fetches: 0, bypassFetches: 0, overruns: 0, crashes: 0, forcedClaims: 0, leasesRunOut: 0 };

  constructor(
    private readonly table: SharedTable,
    private readonly settings: LeaseSettings,
    private readonly violations: Violations,
    /** How far back a table error explains a fetch that bypassed the table (the longest request). */
    private readonly bypassWindowMs: number,
  ) {}

  applied(op: AppliedOp): void {
    this.#checkItem(op);
    if (op.op === 'take' && (op.result as { acquired: boolean }).acquired) this.#took(op);
    if (op.op === 'renew' && op.result === true) this.#checkLeaseEnd(op);
    if (op.op === 'write' && op.result === true) this.#wrote(op);
    const before = op.before.lease?.owner;
    if (before !== undefined && op.after.lease?.owner !== before && op.op !== 'take') {
      const tenure = this.#tenures.get(before);
      if (tenure && tenure.end === undefined) tenure.end = op.op === 'write' && op.result ? 'written' : 'released';
    }
  }

  #took(op: AppliedOp): void {
    const owner = op.owner!;
    const name = (o: string | undefined) => this.table.ownerName(o);
    const previous = op.before.lease;
    if (previous && previous.owner !== owner) {
      const ranOut = previous.untilEpochMs <= op.clockMs;
      // Known issue: the take's condition compared the lease with a clock reading older than the lease's write.
      const readAtMs = op.request?.nowMs ?? op.clockMs;
      const pinnedByLatency =
        readAtMs < op.clockMs && previous.untilEpochMs > readAtMs + this.settings.leaseDurationMs + CLOCK_SKEW_MS;
      const tenure = previous.owner === undefined ? undefined : this.#tenures.get(previous.owner);
      if (tenure && tenure.end === undefined) tenure.end = ranOut ? 'ran-out' : pinnedByLatency ? 'known' : 'stolen';
      if (ranOut) this.seen.leasesRunOut += 1;
      if (!ranOut)
        this.violations.add(
          'leaseStolen',
          `${op.who.name} took the lease of ${keyLabel(op.key)} as ${name(owner)} on its clock ${this.table.trace.at(op.clockMs)} ` +
            `(read ${op.clockMs - readAtMs} ms before), while ${name(previous.owner)} held it until ${this.table.trace.at(previous.untilEpochMs)}`,
          pinnedByLatency ? 'pinnedByLatency' : undefined,
        );
    }
    this.#checkLeaseEnd(op);
    const forced = op.request?.forceRefreshIntervalMs !== undefined;
    const token = op.before.token;
    const tenure: Tenure = {
      owner,
      who: op.who as Observed,
      key: op.key,
      forced,
      freshAtTake: !forced && token && !isDue(token, op.clockMs) ? token : undefined,
      fetches: 0,
    };
    this.#tenures.set(owner, tenure);
    const mine = this.#latest.get(tenure.who) ?? new Map<string, Tenure>();
    mine.set(op.key, tenure);
    this.#latest.set(tenure.who, mine);
    if (forced) this.#claimed(op);
  }

  /**
   * Forced claims of a key: at least the interval apart on the claimers' clocks, so the interval less the skew.
   * Per caller and client (issue 18, built in parallel): when its budget lands, the claim's request (ModelRequest, to
   * carry the caller) is checked against that budget here too.
   */
  #claimed(op: AppliedOp): void {
    this.seen.forcedClaims += 1;
    const decidedTrueMs = op.request!.nowMs - (op.who as Observed).skewMs;
    const last = this.#lastClaimTrueMs.get(op.key);
    const minGapMs = this.settings.forceRefreshIntervalMs - CLOCK_SKEW_MS;
    const stored = op.before.forcedFetchAtEpochMs;
    const readAtMs = op.request!.nowMs;
    const pinnedByLatency = stored !== undefined && readAtMs < op.clockMs && stored > readAtMs + CLOCK_SKEW_MS;
    if (last !== undefined && decidedTrueMs - last < minGapMs)
      this.violations.add(
        'forcedTooOften',
        `${op.who.name} claimed a forced fetch of ${keyLabel(op.key)} ${decidedTrueMs - last} ms after the last one`,
        pinnedByLatency ? 'pinnedByLatency' : undefined,
      );
    this.#lastClaimTrueMs.set(op.key, decidedTrueMs);
  }

  #checkLeaseEnd(op: AppliedOp): void {
    const lease = op.after.lease;
    if (lease && lease.untilEpochMs > op.clockMs + this.settings.leaseDurationMs)
      this.violations.add(
        'leaseTooLong',
        `${op.who.name} wrote a lease of ${keyLabel(op.key)} ending ${lease.untilEpochMs - op.clockMs} ms after its clock`,
      );
  }

  #wrote(op: AppliedOp): void {
    const { before, after } = op;
    if (before.token && after.token && after.token.expiresAtEpochSec < before.token.expiresAtEpochSec)
      this.violations.add(
        'tokenWentBack',
        `${op.who.name} replaced ${before.token.accessToken} by ${after.token.accessToken}, which expires earlier`,
      );
    const holder = before.lease?.owner;
    if (before.lease && holder !== op.owner)
      this.violations.add(
        'writeOverLease',
        `${op.who.name} wrote ${after.token?.accessToken} for ${keyLabel(op.key)} while ${this.table.ownerName(holder)} held the lease`,
      );
  }

  /** The item is one brokers could have written: a lease names its owner and an end, a token is coherent. */
  #checkItem(op: AppliedOp): void {
    const { lease, token, forcedFetchAtEpochMs } = op.after;
    const bad =
      (lease && (typeof lease.owner !== 'string' || !Number.isFinite(lease.untilEpochMs))) ||
      (token &&
        !(
          token.issuedAtEpochSec <= token.refreshAtEpochSec &&
          token.refreshAtEpochSec <= token.expiresAtEpochSec &&
          token.accessToken.length > 0
        )) ||
      (forcedFetchAtEpochMs !== undefined && !Number.isFinite(forcedFetchAtEpochMs));
    if (bad) this.violations.add('malformedItem', `${op.op} left ${keyLabel(op.key)} as ${JSON.stringify(op.after)}`);
  }

  /** A fetch starts: through the table path under a lease (`viaLease`), or bypassing the table. */
  fetchStarted(who: Observed, key: string, ctx: FetchRequest, viaLease: boolean): Episode {
    this.seen.fetches += 1;
    if (!viaLease) this.seen.bypassFetches += 1;
    // The fetch belongs to the container's latest lease on the key: still held, or already lost (ran out, or taken
    // by the known issue) in the moment between its take and the fetch.
    const latest = viaLease ? this.#latest.get(who)?.get(key) : undefined;
    const tenure = latest && latest.end !== 'released' && latest.end !== 'written' ? latest : undefined;
    const lostAlready = tenure !== undefined && tenure.end !== undefined;
    const episode: Episode = { who, key, tenure, live: true };
    const label = keyLabel(key);
    if (viaLease && !tenure) this.violations.add('fetchWithoutLease', `${who.name} fetched ${label} without its lease`);
    if (!viaLease && !who.tableErrorSince(this.table.sim.nowMs - this.bypassWindowMs))
      this.violations.add('bypassWithoutError', `${who.name} fetched ${label} around the table, which never failed it`);
    if (tenure) {
      tenure.fetches += 1;
      const name = this.table.ownerName(tenure.owner);
      if (tenure.fetches > 1) this.violations.add('twoFetchesOneLease', `${name} fetched ${label} twice`);
      const rejected = (ctx as FetchRequest & { rejectedTokenSha256?: string }).rejectedTokenSha256;
      const fresh = tenure.freshAtTake;
      if (fresh && (rejected === undefined || sha256Hex(fresh.accessToken) !== rejected))
        this.violations.add(
          'redundantFetch',
          `${name} fetched ${label} although the item held ${fresh.accessToken} (due ${this.table.trace.at(fresh.refreshAtEpochSec * 1000)}) when it took the lease`,
        );
      for (const other of this.#episodes) {
        if (!other.live || other.key !== key || other.tenure === undefined || other === episode) continue;
        if (lostAlready || other.tenure.end === 'ran-out' || other.tenure.end === 'known') this.seen.overruns += 1;
        else
          this.violations.add(
            'concurrentFetch',
            `${name} fetched ${label} while ${this.table.ownerName(other.tenure.owner)} was still fetching it under its lease`,
          );
      }
    }
    this.#episodes.push(episode);
    return episode;
  }

  fetchEnded(episode: Episode): void {
    episode.live = false;
  }

  crashed(who: Observed): void {
    this.seen.crashes += 1;
    for (const episode of this.#episodes) if (episode.who === who) episode.live = false;
  }

  /** After every step: no lease outlives its bound, and a container with nothing to do holds none. */
  afterStep(keys: readonly string[], containers: readonly Observed[]): void {
    const nowMs = this.table.sim.nowMs;
    for (const key of keys) {
      const lease = this.table.items.items.get(key)?.lease;
      if (!lease?.owner) continue;
      const tenure = this.#tenures.get(lease.owner);
      if (!tenure || tenure.who.crashed || !containers.includes(tenure.who)) continue;
      if (lease.untilEpochMs > nowMs + CLOCK_SKEW_MS + this.settings.leaseDurationMs)
        this.violations.add('leaseTooLong', `the lease of ${keyLabel(key)} ends beyond any holder's bound`);
      if (!tenure.who.busy() && !tenure.who.ownerUncertain(lease.owner))
        this.violations.add(
          'leaseLeftBehind',
          `${tenure.who.name} has no request running and still holds the lease of ${keyLabel(key)} as ${this.table.ownerName(lease.owner)}`,
        );
    }
  }
}
