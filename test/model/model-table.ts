/**
 * The token table as the model's containers see it. One shared FakeTable (test/support/fakes/fake-table.ts: its
 * conditional writes evaluate the named conditions of conditions.ts, as DynamoDB does) holds the items; each container
 * reaches it through its own ContainerTable, which makes every call a step the scheduler orders (a latency, the write
 * applied atomically, the answer delivered), serves eventually consistent reads from recent versions of the item, and
 * injects the faults of the run: an outage (OutageTable: reads and takes fail), flaky calls that fail before they are
 * applied or lose their answer after, and a crash, after which the container's calls are never applied or answered.
 */

import type { CachedToken } from '../../functions/lib/domain/cached-token';
import type {
  BudgetClaim,
  BudgetRequest,
  LeaseAttempt,
  LeaseRequest,
  StoredEntry,
  TokenTable,
} from '../../functions/lib/ports';
import { UnavailableError } from '../../functions/lib/shared/errors';
import { type FakeTable, OutageTable } from '../support/fakes/fake-table';
import { type Actor, pick, type Sim } from './sim';
import type { Trace } from './trace';

/** DynamoDB's eventually consistent reads may miss writes of about the last second. */
export const EVENTUAL_WINDOW_MS = 1_000;
/**
 * How long a container's table calls take before they are applied (ms): at once, a jitter, or slow (a container far
 * from the table, or retrying): then another container may do a whole miss between its read and its take.
 */
export const TABLE_LATENCIES_MS = { fast: [0], jittery: [0, 0, 1, 5, 20], slow: [20, 35, 50] } as const;
export type TableLatency = keyof typeof TABLE_LATENCIES_MS;
/** The most a table call takes in the model (the slack of the deadline property). */
export const MAX_TABLE_LATENCY_MS = 50;

export type TableOpName = 'read' | 'take' | 'write' | 'renew' | 'release' | 'budget';

/** A table call that was applied, as the properties see it. */
export interface AppliedOp {
  op: TableOpName;
  key: string;
  who: TableUser;
  trueMs: number;
  clockMs: number;
  owner?: string;
  request?: LeaseRequest;
  token?: CachedToken;
  before: StoredEntry;
  after: StoredEntry;
  result: unknown;
}

/** A container, as its table view needs it. */
export interface TableUser extends Actor {
  nowMs(): number;
  readonly random: () => number;
  /** The table is down for this container (reads and takes fail). */
  tableDown(): boolean;
  /** Calls of this container fail at random. */
  tableFlaky(): boolean;
  readonly tableLatency: TableLatency;
  /** A table call failed for this container (it may now fetch without the lease). */
  noteTableError(key: string, owner: string | undefined): void;
}

export interface TableWatch {
  applied(op: AppliedOp): void;
}

/** A copy of an item as a read would see it. */
export const snapshot = (table: FakeTable, key: string): StoredEntry => {
  const item = table.items.get(key);
  if (!item) return {};
  return {
    ...(item.token ? { token: item.token } : {}),
    ...(item.lease ? { lease: { ...item.lease } } : {}),
    ...(item.forcedFetchAtEpochMs === undefined ? {} : { forcedFetchAtEpochMs: item.forcedFetchAtEpochMs }),
  };
};

/** The one table all containers share: its items, their recent versions, and who holds which lease owner name. */
export class SharedTable {
  readonly #versions = new Map<string, { sinceMs: number; entry: StoredEntry }[]>();
  readonly #owners = new Map<string, string>();
  readonly #counts = new Map<string, number>();
  /** Eventually consistent reads answered with an older version of the item. */
  staleReads = 0;

  constructor(
    readonly items: FakeTable,
    readonly sim: Sim,
    readonly trace: Trace,
    readonly watch: TableWatch,
  ) {}

  /** A short name for a lease owner (`c2#3`: container c2's third lease). */
  ownerName(owner: string | undefined, who?: Actor): string {
    if (owner === undefined) return 'nobody';
    let name = this.#owners.get(owner);
    if (name === undefined && who !== undefined) {
      const n = (this.#counts.get(who.name) ?? 0) + 1;
      this.#counts.set(who.name, n);
      name = `${who.name}#${n}`;
      this.#owners.set(owner, name);
    }
    return name ?? `?${owner.slice(-6)}`;
  }

  recordVersion(key: string): void {
    const versions = this.#versions.get(key) ?? [];
    versions.push({ sinceMs: this.sim.nowMs, entry: snapshot(this.items, key) });
    // Keep the versions an eventual read may still return: the current one and those replaced within the window.
    while (versions.length > 1 && versions[1]!.sinceMs < this.sim.nowMs - EVENTUAL_WINDOW_MS) versions.shift();
    this.#versions.set(key, versions);
  }

  /** What an eventually consistent read returns: the item now, or a version replaced within the window. */
  eventual(key: string, current: StoredEntry, random: () => number): StoredEntry {
    const versions = (this.#versions.get(key) ?? []).filter(
      (_v, i, all) => i === all.length - 1 || all[i + 1]!.sinceMs >= this.sim.nowMs - EVENTUAL_WINDOW_MS,
    );
    if (versions.length <= 1 || random() < 0.5) return current;
    const version = pick(random, versions);
    if (version !== versions[versions.length - 1]) this.staleReads += 1;
    return version.entry;
  }
}

const tableError = (what: string) => new UnavailableError(`DynamoDB ${what} failed (model fault)`, 'table_unavailable');

/** One container's view of the shared table (see the module comment). `below`: the table it calls, maybe broken. */
export class ContainerTable implements TokenTable {
  readonly #outage: OutageTable;

  constructor(
    private readonly shared: SharedTable,
    private readonly user: TableUser,
    below: TokenTable,
  ) {
    this.#outage = new OutageTable(below);
  }

  read(key: string, consistent?: boolean): Promise<StoredEntry> {
    return this.#call({ op: 'read', key }, async (t) => {
      const current = await t.read(key, consistent);
      return consistent ? current : this.shared.eventual(key, current, this.user.random);
    });
  }

  tryAcquireLease(key: string, owner: string, request: LeaseRequest): Promise<LeaseAttempt> {
    this.shared.ownerName(owner, this.user);
    return this.#call({ op: 'take', key, owner, request }, (t) => t.tryAcquireLease(key, owner, request));
  }

  writeToken(key: string, token: CachedToken, client: string, owner?: string, replaces?: Uint8Array) {
    return this.#call({ op: 'write', key, owner, token }, (t) => t.writeToken(key, token, client, owner, replaces));
  }

  renewLease(key: string, owner: string, untilEpochMs: number): Promise<boolean> {
    return this.#call({ op: 'renew', key, owner }, (t) => t.renewLease(key, owner, untilEpochMs));
  }

  releaseLease(key: string, owner: string): Promise<void> {
    return this.#call({ op: 'release', key, owner }, (t) => t.releaseLease(key, owner));
  }

  claimForceBudget(key: string, request: BudgetRequest): Promise<BudgetClaim> {
    return this.#call({ op: 'budget', key }, (t) => t.claimForceBudget(key, request));
  }

  async #call<T>(
    call: Pick<AppliedOp, 'op' | 'key' | 'owner' | 'request' | 'token'>,
    run: (table: TokenTable) => Promise<T>,
  ): Promise<T> {
    const { shared, user } = this;
    const latencyMs = pick(user.random, TABLE_LATENCIES_MS[user.tableLatency]);
    if (latencyMs > 0) await shared.sim.sleep(user, latencyMs);
    await shared.sim.point(user, `${user.name} ${call.op}`);
    const label = `table ${call.op} ${keyLabel(call.key)}${call.owner ? ` as ${shared.ownerName(call.owner)}` : ''}`;
    if (user.tableFlaky() && user.random() < 0.25) return this.#fail(call, label, false);
    this.#outage.down = user.tableDown();
    const before = snapshot(shared.items, call.key);
    let result: T;
    try {
      result = await run(this.#outage);
    } catch (err) {
      return this.#fail(call, label, false, err);
    }
    const after = snapshot(shared.items, call.key);
    if (call.op !== 'read') shared.recordVersion(call.key);
    shared.trace.add(
      shared.sim.nowMs,
      user,
      () => `${label} -> ${describe(call.op, result, after, shared)}`,
      user.nowMs(),
    );
    shared.watch.applied({
      ...call,
      who: user,
      trueMs: shared.sim.nowMs,
      clockMs: user.nowMs(),
      before,
      after,
      result,
    });
    await shared.sim.point(user, `${user.name} ${call.op} answer`);
    if (user.tableFlaky() && user.random() < 0.1) return this.#fail(call, label, true);
    return result;
  }

  #fail(call: Pick<AppliedOp, 'op' | 'key' | 'owner'>, label: string, applied: boolean, err?: unknown): never {
    const { shared, user } = this;
    shared.trace.add(
      shared.sim.nowMs,
      user,
      `${label} FAILED${applied ? ' after it was applied (answer lost)' : ''}`,
      user.nowMs(),
    );
    user.noteTableError(call.key, call.owner);
    throw err ?? tableError(call.op);
  }
}

/** Keys are labelled by their scope set in traces (the model's cache keys map back to them). */
const keyLabels = new Map<string, string>();
export const labelKey = (cacheKey: string, label: string): void => {
  keyLabels.set(cacheKey, label);
};
export const keyLabel = (cacheKey: string): string => keyLabels.get(cacheKey) ?? cacheKey.slice(0, 10);

const describe = (op: TableOpName, result: unknown, after: StoredEntry, shared: SharedTable): string => {
  const lease = after.lease
    ? `lease ${shared.ownerName(after.lease.owner)} until ${shared.trace.at(after.lease.untilEpochMs)}`
    : 'no lease';
  const token = after.token ? `token ${after.token.accessToken}` : 'no token';
  if (op === 'take') return `${(result as LeaseAttempt).acquired ? 'WON' : 'lost'} (${token}, ${lease})`;
  if (op === 'read') {
    const seen = result as StoredEntry;
    return `${seen.token ? seen.token.accessToken : 'no token'}, ${seen.lease ? `lease ${shared.ownerName(seen.lease.owner)}` : 'no lease'}`;
  }
  if (op === 'write' || op === 'renew') return `${result ? 'done' : 'REFUSED'} (${token}, ${lease})`;
  return `(${token}, ${lease})`;
};
