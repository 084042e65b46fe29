/**
 * One simulated container: the real token path (TokenBroker), the real lease loop (TableLease) and the real
 * EndpointTokenProvider, assembled as runtime.ts assembles them, with the ports the unit tests use: its own clock (true
 * time plus its skew), its own random draws, sleeps on the simulation's timers, its own view of the shared table, and
 * the fake endpoint. A crash abandons it: its pending steps never resume, its memory is gone, and the slot is taken by
 * a new container (cold, with a new lease owner id).
 */
import { TokenBroker } from '../../functions/lib/broker/token-broker';
import { InMemoryLease } from '../../functions/lib/cache/lease/in-memory-lease';
import { TableLease } from '../../functions/lib/cache/lease/table-lease';
import { MemoryTokenCache } from '../../functions/lib/cache/memory-cache';
import { ClientCredentials } from '../../functions/lib/domain/client-credentials';
import type { BrokerConfig } from '../../functions/lib/domain/settings';
import type { CredentialSource, TokenProvider, TokenTable } from '../../functions/lib/ports';
import { EndpointTokenProvider } from '../../functions/lib/upstream/endpoint-token-provider';
import { silentLog } from '../support/fakes/silent-log';
import type { FakeEndpoint } from './endpoint';
import type { LeaseProperties, Observed } from './lease-properties';
import { ContainerTable, keyLabel, type SharedTable, type TableLatency } from './model-table';
import { seededRandom } from './sim';

const credentials = new ClientCredentials('model-secret', 'lr_model', 'not-a-real-secret', 'v1');
const secrets: CredentialSource = {
  get: async () => credentials,
  previous: async () => undefined,
  remember: () => undefined,
};

/** What every container shares. */
export interface ContainerParts {
  shared: SharedTable;
  endpoint: FakeEndpoint;
  props: LeaseProperties;
  config: BrokerConfig;
  /** The table below a container's view: the shared FakeTable, or a deliberately broken wrapper of it. */
  below: (container: Container) => TokenTable;
  /** The table is down, or flaky, for every container. */
  faults: { tableDown: boolean; tableFlaky: boolean };
  keyOf: (scopes: readonly string[]) => string;
}

export class Container implements Observed {
  crashed = false;
  down = false;
  flaky = false;
  /** Requests (and prewarm runs) of this container still running. */
  running = 0;
  readonly random: () => number;
  readonly broker: TokenBroker;
  readonly #tableErrors: { trueMs: number; key: string }[] = [];
  readonly #uncertain = new Set<string>();

  constructor(
    private readonly parts: ContainerParts,
    readonly name: string,
    readonly skewMs: number,
    readonly tableLatency: TableLatency,
    seed: number,
  ) {
    const { config, shared, endpoint } = parts;
    const sim = shared.sim;
    this.random = seededRandom(seed);
    const clock = { nowMs: () => this.nowMs() };
    const sleep = (ms: number) => sim.sleep(this, ms);
    const store = new ContainerTable(shared, this, parts.below(this));
    const provider = new EndpointTokenProvider(secrets, clock, {
      timeoutMs: config.tokenEndpointTimeoutMs,
      maxAttempts: config.tokenEndpointMaxAttempts,
      request: endpoint.requestFor(this),
      random: this.random,
      sleep,
    });
    const memory = new MemoryTokenCache(config.memoryCacheMaxEntries);
    const forceRefreshIntervalMs = config.forceRefreshMinIntervalSec * 1000;
    const viaLease = this.#recording(provider, true);
    const lease = new TableLease({
      store,
      fetcher: viaLease,
      memory,
      clock,
      leaseDurationMs: config.refreshLeaseMs,
      forceRefreshIntervalMs,
      random: this.random,
      sleep,
    });
    const tableDown = new InMemoryLease({
      fetcher: this.#recording(provider, false),
      memory,
      clock,
      forceRefreshIntervalMs,
    });
    this.broker = new TokenBroker({
      config,
      clock,
      secrets,
      store,
      memory,
      fetcher: viaLease,
      lease,
      tableDown,
      log: silentLog,
    });
  }

  nowMs(): number {
    return this.parts.shared.sim.nowMs + this.skewMs;
  }

  tableDown(): boolean {
    return this.down || this.parts.faults.tableDown;
  }

  tableFlaky(): boolean {
    return this.flaky || this.parts.faults.tableFlaky;
  }

  noteTableError(key: string, owner: string | undefined): void {
    this.#tableErrors.push({ trueMs: this.parts.shared.sim.nowMs, key });
    // A failed call naming an owner (a take maybe applied, a write, renewal or release maybe not) may leave its lease
    // held until it runs out: the holder cannot know.
    if (owner !== undefined) this.#uncertain.add(owner);
  }

  tableErrorSince(sinceTrueMs: number, key?: string): boolean {
    return this.#tableErrors.some((e) => e.trueMs >= sinceTrueMs && (key === undefined || e.key === key));
  }

  ownerUncertain(owner: string): boolean {
    return this.#uncertain.has(owner);
  }

  busy(): boolean {
    return this.running > 0;
  }

  crash(): void {
    this.crashed = true;
    this.parts.props.crashed(this);
  }

  /** The provider as a path uses it: each fetch is an episode the properties follow. */
  #recording(inner: TokenProvider, viaLease: boolean): TokenProvider {
    const { props, shared, keyOf } = this.parts;
    return {
      fetch: async (ctx) => {
        const key = keyOf(ctx.scopes);
        shared.trace.add(
          shared.sim.nowMs,
          this,
          `fetch ${keyLabel(key)} ${viaLease ? 'under its lease' : 'around the table (in-memory lease)'}`,
          this.nowMs(),
        );
        const episode = props.fetchStarted(this, key, ctx, viaLease);
        try {
          return await inner.fetch(ctx);
        } finally {
          props.fetchEnded(episode);
        }
      },
    };
  }
}
