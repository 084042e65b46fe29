/**
 * Deliberately broken lease protocols, to show the model check finds real bugs. Each is injected where the unit tests
 * inject theirs, through the TokenTable port (a wrapper of the shared FakeTable that a container's view calls), never by
 * a switch in production code:
 * - skipCondition: a take that ignores the lease condition (any take wins);
 * - staleAfterWin: a holder that never re-reads after winning (the take's answer is the item as the container last
 *   read it, so the double check decides on what it saw before);
 * - noSkewBound: a lease bound without the clock skew (a lease ending later than now + REFRESH_LEASE_MS counts as
 *   pinned, so a holder whose clock runs ahead loses its lease);
 * - neverReleases: a release that does nothing (the lease stays until it runs out);
 * - writeOverLonger: a token write that ignores the stored token's expiry (the cache may go back in time);
 * - neverWins: a take that always loses (nobody ever fetches: requests wait until their deadline);
 * - releaseHangs: a release that never answers (the request that releases never ends).
 */
import { forcedFetchQuiet, type ItemFacts } from '../../functions/lib/cache/table/conditions';
import type {
  BudgetClaim,
  BudgetRequest,
  LeaseAttempt,
  LeaseRequest,
  StoredEntry,
  TokenTable,
} from '../../functions/lib/ports';
import type { FakeTable } from '../support/fakes/fake-table';
import { snapshot } from './model-table';
import type { TableBelow } from './world';

/** Forwards every call to the shared table; a break overrides one. */
class Passthrough implements TokenTable {
  constructor(protected readonly table: FakeTable) {}
  read(key: string, _consistent?: boolean) {
    return this.table.read(key);
  }
  tryAcquireLease(key: string, owner: string, request: LeaseRequest): Promise<LeaseAttempt> {
    return this.table.tryAcquireLease(key, owner, request);
  }
  writeToken(...[key, token, client, owner]: Parameters<TokenTable['writeToken']>) {
    return this.table.writeToken(key, token, client, owner);
  }
  renewLease(key: string, owner: string, untilEpochMs: number) {
    return this.table.renewLease(key, owner, untilEpochMs);
  }
  releaseLease(key: string, owner: string) {
    return this.table.releaseLease(key, owner);
  }
  claimForceBudget(key: string, request: BudgetRequest): Promise<BudgetClaim> {
    return this.table.claimForceBudget(key, request);
  }
}

const factsOf = (entry: StoredEntry): ItemFacts => ({
  leaseOwner: entry.lease?.owner,
  leaseUntilEpochMs: entry.lease?.untilEpochMs,
  forcedFetchAtEpochMs: entry.forcedFetchAtEpochMs,
});

/** A take that decides with `takeable` instead of the table's named condition (the forced claim's is kept). */
const takeWith = (
  table: FakeTable,
  key: string,
  owner: string,
  request: LeaseRequest,
  takeable: (lease: StoredEntry['lease'], request: LeaseRequest) => boolean,
): LeaseAttempt => {
  const entry = snapshot(table, key);
  const { nowMs, leaseDurationMs, forceRefreshIntervalMs: interval } = request;
  const forcedOk = interval === undefined || forcedFetchQuiet(nowMs, interval).holds(factsOf(entry));
  if (!takeable(entry.lease, request) || !forcedOk) return { acquired: false, entry };
  const item = table.items.get(key) ?? {};
  const claimed = interval === undefined ? {} : { forcedFetchAtEpochMs: nowMs };
  table.items.set(key, { ...item, ...claimed, lease: { owner, untilEpochMs: nowMs + leaseDurationMs } });
  return { acquired: true, entry: snapshot(table, key) };
};

class SkipCondition extends Passthrough {
  override async tryAcquireLease(key: string, owner: string, request: LeaseRequest) {
    return takeWith(this.table, key, owner, request, () => true);
  }
}

class NoSkewBound extends Passthrough {
  override async tryAcquireLease(key: string, owner: string, request: LeaseRequest) {
    return takeWith(
      this.table,
      key,
      owner,
      request,
      (lease, { nowMs, leaseDurationMs }) =>
        lease === undefined || lease.untilEpochMs <= nowMs || lease.untilEpochMs > nowMs + leaseDurationMs,
    );
  }
}

/** Per container (one instance each): answers a won take with the item as this container last read it. */
class StaleAfterWin extends Passthrough {
  readonly #lastRead = new Map<string, StoredEntry>();
  override async read(key: string) {
    const entry = await this.table.read(key);
    this.#lastRead.set(key, entry);
    return entry;
  }
  override async tryAcquireLease(key: string, owner: string, request: LeaseRequest) {
    const attempt = await this.table.tryAcquireLease(key, owner, request);
    if (!attempt.acquired) return attempt;
    const { token: _now, ...rest } = attempt.entry;
    const seen = this.#lastRead.get(key)?.token;
    return { acquired: true as const, entry: { ...rest, ...(seen ? { token: seen } : {}) } };
  }
}

class NeverReleases extends Passthrough {
  override async releaseLease() {}
}

class NeverWins extends Passthrough {
  override async tryAcquireLease(key: string) {
    return { acquired: false as const, entry: snapshot(this.table, key) };
  }
}

class ReleaseHangs extends Passthrough {
  override releaseLease(): Promise<void> {
    return new Promise(() => undefined);
  }
}

class WriteOverLonger extends Passthrough {
  override async writeToken(...[key, token, , owner]: Parameters<TokenTable['writeToken']>) {
    const item = this.table.items.get(key) ?? {};
    const holder = item.lease?.owner;
    if (holder !== undefined && holder !== owner) return false;
    this.table.items.set(key, { ...item, token, lease: undefined });
    return true;
  }
}

export const BREAKS = {
  skipCondition: (table) => new SkipCondition(table),
  staleAfterWin: (table) => new StaleAfterWin(table),
  noSkewBound: (table) => new NoSkewBound(table),
  neverReleases: (table) => new NeverReleases(table),
  writeOverLonger: (table) => new WriteOverLonger(table),
  neverWins: (table) => new NeverWins(table),
  releaseHangs: (table) => new ReleaseHangs(table),
} satisfies Record<string, TableBelow>;

export type BreakName = keyof typeof BREAKS;
