/**
 * One run of the model: a fleet of containers over one table and one endpoint, driven tick by tick through a
 * scenario (operations.ts) while fast-check's scheduler orders every step, with the properties (lease-properties.ts,
 * answer-properties.ts) checked after each step. A run ends when every request has ended or, at the latest, when the
 * last deadline has passed: a request still running then has hung.
 */
import type { Scheduler } from 'fast-check';
import { CLOCK_SKEW_MS } from '../../functions/lib/cache/lease/lease-rules';
import { loadConfig } from '../../functions/lib/config/load-config';
import { cacheKeyFor } from '../../functions/lib/domain/cache-key';
import type { BrokerConfig, ClientConfig } from '../../functions/lib/domain/settings';
import type { TokenTable } from '../../functions/lib/ports';
import { FakeTable } from '../support/fakes/fake-table';
import { AnswerProperties, DEADLINE_SLACK_MS, type ModelRequest } from './answer-properties';
import { Container } from './container';
import { FakeEndpoint } from './endpoint';
import { launch } from './launch';
import { LeaseProperties } from './lease-properties';
import { keyLabel, labelKey, SharedTable } from './model-table';
import { describeOperation, KEYS, MAX_BUDGET_MS, type Operation, type Scenario } from './operations';
import { ProgressError, Sim, seededRandom } from './sim';
import { Trace } from './trace';
import { type PropertyName, Violations } from './violations';

export const START_MS = Date.parse('2026-11-29T06:00:00Z');

/** The table below each container's view: the shared FakeTable, or (to test the checker) a broken wrapper of it. */
export type TableBelow = (table: FakeTable, container: Container) => TokenTable;

export interface WorldOptions {
  /** The table below each container (a deliberately broken one, to test the checker). */
  below?: TableBelow;
  /** Count the known issues (violations.ts KNOWN_ISSUES) as violations. */
  strict?: boolean;
  /** Properties not checked (to see which others catch a break). */
  ignore?: readonly PropertyName[];
}

export const modelConfig = (env: NodeJS.ProcessEnv = {}): BrokerConfig =>
  loadConfig({
    TOKEN_TABLE_NAME: 'tokens',
    TOKEN_KMS_KEY_ID: 'key',
    CALLER_PROOF_AUDIENCE: 'broker',
    BROKER_CLIENTS: JSON.stringify({
      limitrail: {
        secretId: 'model-secret',
        tokenUrl: 'https://auth.example/connect/token',
        clientId: 'lr_model',
        scopes: ['a', 'b'],
        prewarm: KEYS,
      },
    }),
    ...env,
  });

/** The configuration of a run (loaded once per setting: loadConfig is the code under test, not the model's cost). */
const configs = new Map<string, BrokerConfig>();
const configFor = ({ refreshLeaseMs, forceRefreshMinIntervalSec }: Scenario['settings']): BrokerConfig => {
  const id = `${refreshLeaseMs}/${forceRefreshMinIntervalSec}`;
  let config = configs.get(id);
  if (!config) {
    config = modelConfig({
      REFRESH_LEASE_MS: String(refreshLeaseMs),
      FORCE_REFRESH_MIN_INTERVAL_SEC: String(forceRefreshMinIntervalSec),
    });
    configs.set(id, config);
  }
  return config;
};

export class World {
  readonly trace = new Trace(START_MS);
  readonly sim: Sim;
  readonly violations: Violations;
  readonly config: BrokerConfig;
  readonly client: ClientConfig;
  readonly keys: string[];
  readonly endpoint: FakeEndpoint;
  readonly props: LeaseProperties;
  readonly answers: AnswerProperties;
  readonly faults = { tableDown: false, tableFlaky: false };
  readonly slots: Container[] = [];
  readonly live = new Set<ModelRequest>();
  readonly outcomes = new Map<string, number>();
  /** Per key: the access tokens answered so far (what callers may report rejected). */
  readonly answered = KEYS.map((): string[] => []);
  readonly #shared: SharedTable;
  readonly #random: () => number;
  #requests = 0;
  #lastFaultTrueMs = Number.NEGATIVE_INFINITY;

  constructor(
    scheduler: Scheduler,
    private readonly scenario: Scenario,
    { below = (table) => table, strict = false, ignore = [] }: WorldOptions = {},
  ) {
    this.config = configFor(scenario.settings);
    this.client = this.config.clients.get('limitrail')!;
    this.keys = KEYS.map((scopes) => cacheKeyFor(this.client.tokenUrl, this.client.clientId!, scopes));
    this.sim = new Sim(scheduler, START_MS, () => this.#afterStep());
    this.violations = new Violations(() => this.sim.nowMs, strict, new Set(ignore));
    this.#random = seededRandom(scenario.seed);
    for (const [i, key] of this.keys.entries()) labelKey(key, KEYS[i]!.join(' '));
    this.endpoint = new FakeEndpoint(this.sim, this.trace, seededRandom(scenario.seed ^ 0x5eed));
    const table = new FakeTable();
    const leaseMs = this.config.refreshLeaseMs;
    const windowMs = MAX_BUDGET_MS + leaseMs + CLOCK_SKEW_MS;
    this.#shared = new SharedTable(table, this.sim, this.trace, { applied: (op) => this.props.applied(op) });
    this.props = new LeaseProperties(
      this.#shared,
      { leaseDurationMs: leaseMs, forceRefreshIntervalMs: this.config.forceRefreshMinIntervalSec * 1000 },
      this.violations,
      windowMs,
    );
    this.answers = new AnswerProperties(this.violations, this.endpoint, this.config.staleTokenMinTtlSec);
    const parts = {
      shared: this.#shared,
      endpoint: this.endpoint,
      props: this.props,
      config: this.config,
      below: (c: Container) => below(table, c),
      faults: this.faults,
      keyOf: (scopes: readonly string[]) => cacheKeyFor(this.client.tokenUrl, this.client.clientId!, scopes),
    };
    this.#newContainer = (slot: number, generation: number) =>
      new Container(
        parts,
        `c${slot + 1}${"'".repeat(generation)}`,
        scenario.skewsMs[slot]!,
        scenario.tableLatency[slot]!,
        Math.floor(this.#random() * 2 ** 31),
      );
    for (let slot = 0; slot < scenario.containers; slot++) this.slots.push(this.#newContainer(slot, 0));
    const fleet = this.slots.map((c) => `${c.name} clock +${c.skewMs} ms, ${c.tableLatency} table`).join('; ');
    this.trace.add(START_MS, 'world', `${this.slots.length} containers: ${fleet}`);
  }

  readonly #newContainer: (slot: number, generation: number) => Container;

  /** Runs the scenario; throws a ViolationError at the step that breaks a property. */
  async run(): Promise<void> {
    try {
      for (const tick of this.scenario.ticks) {
        for (const op of tick.ops) this.#start(op);
        this.violations.throwFirst();
        if ('steps' in tick.after) await this.sim.settle(tick.after.steps);
        else await this.sim.runUntil(this.sim.nowMs + tick.after.advanceMs);
      }
      await this.#drain();
    } catch (err) {
      if (err instanceof ProgressError) this.violations.add('noProgress', err.message);
      this.violations.throwFirst();
      throw err;
    }
    this.violations.throwFirst();
  }

  /** Lets every running request end: time moves on to the last deadline (and the slack), no further. */
  async #drain(): Promise<void> {
    const lastDeadlineTrueMs = Math.max(
      this.sim.nowMs,
      ...[...this.live].map((r) => r.deadlineMs - (r.who.nowMs() - this.sim.nowMs)),
    );
    await this.sim.runUntil(lastDeadlineTrueMs + DEADLINE_SLACK_MS + 1);
    for (const req of this.live) this.answers.running(req);
    // Every lease left in the table runs out: nothing a broker writes holds anyone off for longer.
    await this.sim.runUntil(this.sim.nowMs + this.config.refreshLeaseMs + CLOCK_SKEW_MS + 1);
    for (const key of this.keys) {
      const lease = this.#shared.items.items.get(key)?.lease;
      if (lease && lease.untilEpochMs > this.sim.nowMs)
        this.violations.add(
          'leaseTooLong',
          `a lease of ${keyLabel(key)} still holds ${lease.untilEpochMs - this.sim.nowMs} ms on`,
        );
    }
  }

  #start(op: Operation): void {
    const slot =
      op.op === 'endpoint' || (op.op === 'table' && op.c === 'all') ? 0 : (op.c as number) % this.slots.length;
    const c = this.slots[slot]!;
    this.trace.add(
      this.sim.nowMs,
      'driver',
      describeOperation(op, () => c.name),
    );
    if (this.#faulty()) this.#lastFaultTrueMs = this.sim.nowMs; // a fault switched off now lasted until now
    switch (op.op) {
      case 'crash':
        c.crash();
        for (const req of this.live) if (req.who === c) this.live.delete(req);
        this.#lastFaultTrueMs = this.sim.nowMs;
        this.slots[slot] = this.#newContainer(slot, this.#generation(slot));
        return;
      case 'table': {
        const target = op.c === 'all' ? this.faults : undefined;
        if (target) {
          target.tableDown = op.state === 'down';
          target.tableFlaky = op.state === 'flaky';
        } else {
          c.down = op.state === 'down';
          c.flaky = op.state === 'flaky';
        }
        return;
      }
      case 'endpoint':
        this.endpoint.mode = op.mode;
        return;
      default: {
        const idle = this.scenario.overlap ? c : this.#idleFrom(slot);
        if (idle && idle !== c) this.trace.add(this.sim.nowMs, 'driver', `${c.name} is busy: routed to ${idle.name}`);
        if (idle) launch(this, idle, op, ++this.#requests);
        else this.trace.add(this.sim.nowMs, 'driver', 'every container is busy: the invocation is not served');
      }
    }
  }

  /** One invocation at a time per container: the first idle one from `slot` on. */
  #idleFrom(slot: number): Container | undefined {
    for (let i = 0; i < this.slots.length; i++) {
      const c = this.slots[(slot + i) % this.slots.length]!;
      if (!c.busy()) return c;
    }
    return undefined;
  }

  #generation(slot: number): number {
    return (this.slots[slot]!.name.match(/'/g)?.length ?? 0) + 1;
  }

  /** The world has had no fault since `sinceTrueMs` and has none now. */
  healthySince(sinceTrueMs: number): boolean {
    return !this.#faulty() && this.#lastFaultTrueMs < sinceTrueMs;
  }

  /** Long enough for any lease and request that began in a fault to be over. */
  get healthWindowMs(): number {
    return MAX_BUDGET_MS + this.config.refreshLeaseMs + CLOCK_SKEW_MS + 1_000;
  }

  #faulty(): boolean {
    return (
      this.endpoint.mode !== 'ok' ||
      this.faults.tableDown ||
      this.faults.tableFlaky ||
      this.slots.some((c) => c.down || c.flaky)
    );
  }

  #afterStep(): void {
    if (this.#faulty()) this.#lastFaultTrueMs = this.sim.nowMs;
    this.props.afterStep(this.keys, this.slots);
    for (const req of this.live) this.answers.running(req);
    this.violations.throwFirst();
  }

  /** What this run went through: steps, upstream requests, fetches, faults met, answers by kind. */
  get stats(): Record<string, number> {
    return {
      steps: this.sim.steps,
      upstreamRequests: this.endpoint.requests.length,
      ...this.props.seen,
      staleReads: this.#shared.staleReads,
      ...Object.fromEntries(this.outcomes),
    };
  }

  /** Counts an outcome of a request (`answer:table`, `error:lease_wait_timeout`, ...). */
  outcome(name: string): void {
    this.outcomes.set(name, (this.outcomes.get(name) ?? 0) + 1);
  }
}
