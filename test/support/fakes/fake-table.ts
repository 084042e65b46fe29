import {
  allOf,
  forceBudgetUnspent,
  forcedFetchQuiet,
  type ItemFacts,
  leaseFreeOrOwnedBy,
  leaseTakeable,
  noLeaseOwner,
  noLongerLivedToken,
  ownsLease,
} from '../../../functions/lib/cache/table/conditions';
import type { CachedToken } from '../../../functions/lib/domain/cached-token';
import type {
  BudgetClaim,
  BudgetRequest,
  Lease,
  LeaseAttempt,
  LeaseRequest,
  StoredEntry,
  TokenTable,
} from '../../../functions/lib/ports';
import { UnavailableError } from '../../../functions/lib/shared/errors';

interface FakeItem {
  token?: CachedToken;
  lease?: Lease;
  forcedFetchAtEpochMs?: number;
}

/** What the table's named conditions (conditions.ts) see on a fake item. */
const factsOf = (item: FakeItem): ItemFacts => ({
  leaseOwner: item.lease?.owner,
  leaseUntilEpochMs: item.lease?.untilEpochMs,
  forcedFetchAtEpochMs: item.forcedFetchAtEpochMs,
  tokenExpiresAtEpochSec: item.token?.expiresAtEpochSec,
});

/**
 * The token table in memory, for unit tests of the lease protocol: its conditional writes evaluate the same named
 * conditions (conditions.ts) as DynamoTokenTable sends to DynamoDB.
 */
export class FakeTable implements TokenTable {
  readonly items = new Map<string, FakeItem>();
  /** Forced-refresh budget items, by budget key: when last spent. */
  readonly budgets = new Map<string, { spentAtEpochMs?: number }>();
  acquisitions = 0;
  budgetClaims = 0;

  async read(key: string): Promise<StoredEntry> {
    return this.#entry(key);
  }

  async tryAcquireLease(
    key: string,
    owner: string,
    { nowMs, leaseDurationMs, forceRefreshIntervalMs }: LeaseRequest,
  ): Promise<LeaseAttempt> {
    this.acquisitions += 1;
    const item = this.items.get(key) ?? {};
    const lease = leaseTakeable(nowMs, leaseDurationMs);
    const condition =
      forceRefreshIntervalMs === undefined ? lease : allOf(lease, forcedFetchQuiet(nowMs, forceRefreshIntervalMs));
    if (!condition.holds(factsOf(item))) return { acquired: false, entry: this.#entry(key) };
    const claimed = forceRefreshIntervalMs === undefined ? {} : { forcedFetchAtEpochMs: nowMs };
    this.items.set(key, { ...item, ...claimed, lease: { owner, untilEpochMs: nowMs + leaseDurationMs } });
    return { acquired: true, entry: this.#entry(key) };
  }

  async writeToken(key: string, token: CachedToken, _client: string, owner?: string): Promise<boolean> {
    const item = this.items.get(key) ?? {};
    const condition = allOf(
      noLongerLivedToken(token.expiresAtEpochSec),
      owner === undefined ? noLeaseOwner() : leaseFreeOrOwnedBy(owner),
    );
    if (!condition.holds(factsOf(item))) {
      // As DynamoTokenTable: a holder whose write is refused gives its lease back.
      if (owner !== undefined) await this.releaseLease(key, owner);
      return false;
    }
    this.items.set(key, { ...item, token, lease: undefined });
    return true;
  }

  async renewLease(key: string, owner: string, untilEpochMs: number): Promise<boolean> {
    const item = this.items.get(key);
    if (!item || !ownsLease(owner).holds(factsOf(item))) return false;
    item.lease = { owner, untilEpochMs };
    return true;
  }

  async releaseLease(key: string, owner: string, options: { forcedFetch?: boolean } = {}): Promise<void> {
    const item = this.items.get(key);
    if (!item || !ownsLease(owner).holds(factsOf(item))) return;
    item.lease = undefined;
    if (options.forcedFetch) item.forcedFetchAtEpochMs = undefined;
  }

  async claimForceBudget(key: string, { nowMs, intervalMs }: BudgetRequest): Promise<BudgetClaim> {
    this.budgetClaims += 1;
    const budget = this.budgets.get(key) ?? {};
    if (!forceBudgetUnspent(nowMs, intervalMs).holds({ budgetSpentAtEpochMs: budget.spentAtEpochMs }))
      return { claimed: false, spentAtEpochMs: budget.spentAtEpochMs };
    this.budgets.set(key, { spentAtEpochMs: nowMs });
    return { claimed: true };
  }

  #entry(key: string): StoredEntry {
    const { token, lease, forcedFetchAtEpochMs } = this.items.get(key) ?? {};
    return {
      ...(token ? { token } : {}),
      ...(lease ? { lease: { ...lease } } : {}),
      ...(forcedFetchAtEpochMs === undefined ? {} : { forcedFetchAtEpochMs }),
    };
  }
}

/**
 * A view of a table that can be switched down: every read and lease attempt then fails as DynamoDB's outage does
 * (table_unavailable); writes, renewals and releases go through.
 */
export class OutageTable implements TokenTable {
  down = false;
  reads = 0;

  constructor(private readonly table: TokenTable) {}

  async read(key: string, consistent?: boolean): Promise<StoredEntry> {
    this.reads += 1;
    if (this.down) throw new UnavailableError('DynamoDB read failed', 'table_unavailable');
    return this.table.read(key, consistent);
  }

  async tryAcquireLease(key: string, owner: string, request: LeaseRequest): Promise<LeaseAttempt> {
    if (this.down) throw new UnavailableError('DynamoDB update failed', 'table_unavailable');
    return this.table.tryAcquireLease(key, owner, request);
  }

  writeToken(...args: Parameters<TokenTable['writeToken']>): Promise<boolean> {
    return this.table.writeToken(...args);
  }

  renewLease(key: string, owner: string, untilEpochMs: number): Promise<boolean> {
    return this.table.renewLease(key, owner, untilEpochMs);
  }

  releaseLease(key: string, owner: string, options?: { forcedFetch?: boolean }): Promise<void> {
    return this.table.releaseLease(key, owner, options);
  }

  async claimForceBudget(key: string, request: BudgetRequest): Promise<BudgetClaim> {
    if (this.down) throw new UnavailableError('DynamoDB update failed', 'table_unavailable');
    return this.table.claimForceBudget(key, request);
  }
}
