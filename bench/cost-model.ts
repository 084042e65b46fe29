/**
 * The cost of a million token requests (pure arithmetic; bench/cost.ts measures the inputs and prints the table).
 *
 * What one request costs depends on the layer that answers it. bench/cost.ts counts, against moto_server, the STS
 * and the sandbox, the calls each path really makes (`PathCalls`):
 *   - memory hit: the container has the token. Nothing but the caller's identity proof: one STS
 *     GetCallerIdentity in CALLER_AUTH=grants (the client packages sign a new proof for each broker call);
 *   - table hit: a container without the token (cold, or its copy is due for refresh and another container has
 *     refreshed it) reads the item and unwraps its data key: GetItem and KMS Decrypt, plus the proof;
 *   - miss: no usable token anywhere: the refresh lease (a conditional UpdateItem), the client secret (Secrets
 *     Manager), a new data key (KMS GenerateDataKey), the token endpoint, the item written, plus the proof. A refresh
 *     made by a warm container costs the same: it happens every 45 minutes of a one-hour token, when the container's
 *     secret and data key (kept 300 s each, SECRET_MAX_AGE_SEC and DATA_KEY_MAX_AGE_SEC) are older than that.
 *
 * How many requests take each path, per million:
 *   - memory hits: the warm-hit ratio given;
 *   - misses: one per key (client and scope set) per refresh interval (75 % of the token lifetime) of the period the
 *     million requests arrive in. The refresh lease makes it one across all containers, and a cold container finds the
 *     token in the table;
 *   - table hits: every other request that memory does not answer.
 * The naive broker keeps tokens in memory only: on every request memory does not answer it fetches a token from the
 * endpoint (no table, no lease), and reads the client secret once per cold container.
 *
 * Lambda duration is not measured here (loopback latencies say nothing of AWS's): each path is billed as the handler's
 * own work plus an assumed in-region round trip per call it makes (ASSUMED_MS); a cold start adds its init phase,
 * billed for managed runtimes since 1 August 2025. Read the real figures from the REPORT lines after a deploy.
 */
import type { Price } from './prices';
import * as prices from './prices';

/** The calls one request on a path makes, as counted. DynamoDB in request units, from the item's measured size. */
export interface PathCalls {
  dynamodbReadUnits: number;
  dynamodbWriteUnits: number;
  /** DynamoDB requests (for the duration). */
  dynamodbRequests: number;
  kms: number;
  sts: number;
  secretsManager: number;
  upstream: number;
}

export interface MeasuredPaths {
  memoryHit: PathCalls;
  tableHit: PathCalls;
  miss: PathCalls;
}

export interface Scenario {
  requests: number;
  /** Share of requests a container answers from memory, 0..1. */
  warmHitRatio: number;
  /** Cold starts (new containers) during those requests. */
  containers: number;
  /** Distinct cache keys asked for (client and scope set). */
  keys: number;
  /** The period the requests arrive in. */
  hours: number;
  tokenLifetimeSec: number;
  /** The functions' memory (serverless.yml provider.memorySize). */
  memoryMb: number;
}

/** Assumed billed milliseconds (AWS bills duration per 1 ms, rounded up): not measured here. */
export const ASSUMED_MS = {
  /** The handler's own work on a memory hit (0.05 ms on loopback here) rounds up to the 1 ms billed. */
  handler: 1,
  sts: 15,
  dynamodb: 5,
  kms: 8,
  secretsManager: 15,
  /** The token endpoint's round trip (LimitRail's, from Lambda). */
  upstream: 150,
  /** A cold start's init phase at 256 MB: loading the ~450 KiB bundle, building the SDK clients. */
  init: 400,
} as const;

/** The share of a token's lifetime after which it is refreshed (functions/lib/cache/token-lifetime.ts). */
const REFRESH_AT_LIFETIME_SHARE = 0.75;

const billedMs = (c: PathCalls): number =>
  ASSUMED_MS.handler +
  c.sts * ASSUMED_MS.sts +
  c.dynamodbRequests * ASSUMED_MS.dynamodb +
  c.kms * ASSUMED_MS.kms +
  c.secretsManager * ASSUMED_MS.secretsManager +
  c.upstream * ASSUMED_MS.upstream;

const NO_CALLS: PathCalls = {
  dynamodbReadUnits: 0,
  dynamodbWriteUnits: 0,
  dynamodbRequests: 0,
  kms: 0,
  sts: 0,
  secretsManager: 0,
  upstream: 0,
};

/** How many requests take each path, and a broker's totals. */
export interface Usage {
  memoryHits: number;
  tableHits: number;
  misses: number;
  lambdaRequests: number;
  gbSeconds: number;
  dynamodbReadUnits: number;
  dynamodbWriteUnits: number;
  kms: number;
  sts: number;
  secretsManager: number;
  upstream: number;
}

const total = (
  scenario: Scenario,
  paths: [count: number, calls: PathCalls][],
  extra: Partial<PathCalls> = {},
): Omit<Usage, 'memoryHits' | 'tableHits' | 'misses'> => {
  const sum = (pick: (c: PathCalls) => number) =>
    paths.reduce((acc, [n, c]) => acc + n * pick(c), 0) + pick({ ...NO_CALLS, ...extra });
  const ms = paths.reduce((acc, [n, c]) => acc + n * billedMs(c), 0) + scenario.containers * ASSUMED_MS.init;
  return {
    lambdaRequests: scenario.requests,
    gbSeconds: (ms / 1000) * (scenario.memoryMb / 1024),
    dynamodbReadUnits: sum((c) => c.dynamodbReadUnits),
    dynamodbWriteUnits: sum((c) => c.dynamodbWriteUnits),
    kms: sum((c) => c.kms),
    sts: sum((c) => c.sts),
    secretsManager: sum((c) => c.secretsManager),
    upstream: sum((c) => c.upstream),
  };
};

/** Requests memory does not answer; throws when the scenario leaves fewer than a cold start each or a miss per refresh. */
export const paths = (s: Scenario): { memoryHits: number; memoryMisses: number; misses: number } => {
  if (!(s.warmHitRatio >= 0 && s.warmHitRatio <= 1)) throw new Error('--warm-hit-ratio must be between 0 and 1');
  const memoryHits = Math.round(s.requests * s.warmHitRatio);
  const memoryMisses = s.requests - memoryHits;
  const misses = s.keys * Math.ceil((s.hours * 3600) / (s.tokenLifetimeSec * REFRESH_AT_LIFETIME_SHARE));
  const needed = Math.max(s.containers, misses);
  if (memoryMisses < needed) {
    throw new Error(
      `a warm-hit ratio of ${s.warmHitRatio} leaves ${memoryMisses} requests to memory misses, fewer than the ` +
        `${s.containers} cold starts or the ${misses} refreshes: lower it, or lower --containers / --hours`,
    );
  }
  return { memoryHits, memoryMisses, misses };
};

export const brokerUsage = (s: Scenario, m: MeasuredPaths): Usage => {
  const { memoryHits, memoryMisses, misses } = paths(s);
  const tableHits = memoryMisses - misses;
  return {
    memoryHits,
    tableHits,
    misses,
    ...total(s, [
      [memoryHits, m.memoryHit],
      [tableHits, m.tableHit],
      [misses, m.miss],
    ]),
  };
};

/** The naive broker: memory only; a fetch (the proof, the token endpoint) on every memory miss, the secret per cold start. */
export const naiveUsage = (s: Scenario, m: MeasuredPaths): Usage => {
  const { memoryHits, memoryMisses } = paths(s);
  const fetch: PathCalls = { ...NO_CALLS, sts: m.memoryHit.sts, upstream: 1 };
  return {
    memoryHits,
    tableHits: 0,
    misses: memoryMisses,
    ...total(
      s,
      [
        [memoryHits, m.memoryHit],
        [memoryMisses, fetch],
      ],
      { secretsManager: s.containers },
    ),
  };
};

const usd = (n: number) => (n === 0 ? '$0' : n < 0.01 ? `$${n.toFixed(5)}` : `$${n.toFixed(2)}`);
const unitPrice = (n: number) => `$${n.toLocaleString('en-US', { maximumFractionDigits: 4 })}`;
const count = (n: number) => n.toLocaleString('en-US', { maximumFractionDigits: 1 });

/** The cost table: one row per line item, the broker's count and cost beside the naive broker's. */
export const costRows = (broker: Usage, naive: Usage): string[][] => {
  const lines: [string, (u: Usage) => number, Price][] = [
    ['Lambda requests', (u) => u.lambdaRequests, prices.LAMBDA_REQUEST],
    ['Lambda GB-seconds on arm64', (u) => u.gbSeconds, prices.LAMBDA_GB_SECOND_ARM64],
    ['Lambda GB-seconds on x86_64', (u) => u.gbSeconds, prices.LAMBDA_GB_SECOND_X86_64],
    ['DynamoDB read request units', (u) => u.dynamodbReadUnits, prices.DYNAMODB_READ_REQUEST_UNIT],
    ['DynamoDB write request units', (u) => u.dynamodbWriteUnits, prices.DYNAMODB_WRITE_REQUEST_UNIT],
    ['KMS requests', (u) => u.kms, prices.KMS_REQUEST],
    ['STS calls', (u) => u.sts, prices.STS_REQUEST],
    ['Secrets Manager calls', (u) => u.secretsManager, prices.SECRETS_MANAGER_CALL],
    ['upstream token requests', (u) => u.upstream, prices.UPSTREAM_TOKEN_REQUEST],
  ];
  const rows = [['item', 'price per 1M', 'broker: count', 'broker: cost', 'naive: count', 'naive: cost']];
  for (const [name, pick, price] of lines) {
    rows.push([
      name,
      unitPrice(price.usd * 1_000_000),
      count(pick(broker)),
      usd(pick(broker) * price.usd),
      count(pick(naive)),
      usd(pick(naive) * price.usd),
    ]);
  }
  const totalFor = (u: Usage, architecture: 'arm64' | 'x86_64') =>
    lines
      .filter(([name]) => !name.startsWith('Lambda GB-seconds') || name.endsWith(architecture))
      .reduce((acc, [, pick, price]) => acc + pick(u) * price.usd, 0);
  for (const architecture of ['arm64', 'x86_64'] as const) {
    rows.push([
      `total, functions on ${architecture}`,
      '',
      '',
      usd(totalFor(broker, architecture)),
      '',
      usd(totalFor(naive, architecture)),
    ]);
  }
  return rows;
};
