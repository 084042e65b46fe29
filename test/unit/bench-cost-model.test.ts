/**
 * The arithmetic of the bench's cost table (bench/cost-model.ts), with the per-path calls `npm run bench` counted
 * against moto, STS and the sandbox (a miss: GetItem, lease UpdateItem, GetSecretValue, GenerateDataKey, item
 * UpdateItem; a table hit: GetItem, Decrypt; each request one STS call in grants mode).
 */
import { describe, expect, it } from 'vitest';

import { brokerUsage, costRows, type MeasuredPaths, naiveUsage, paths, type Scenario } from '../../bench/cost-model';

const measured: MeasuredPaths = {
  miss: {
    dynamodbReadUnits: 0.5,
    dynamodbWriteUnits: 2,
    dynamodbRequests: 3,
    kms: 1,
    sts: 1,
    secretsManager: 1,
    upstream: 1,
  },
  tableHit: {
    dynamodbReadUnits: 0.5,
    dynamodbWriteUnits: 0,
    dynamodbRequests: 1,
    kms: 1,
    sts: 1,
    secretsManager: 0,
    upstream: 0,
  },
  memoryHit: {
    dynamodbReadUnits: 0,
    dynamodbWriteUnits: 0,
    dynamodbRequests: 0,
    kms: 0,
    sts: 1,
    secretsManager: 0,
    upstream: 0,
  },
};
const scenario: Scenario = {
  requests: 1_000_000,
  warmHitRatio: 0.999,
  containers: 100,
  keys: 1,
  hours: 24,
  tokenLifetimeSec: 3600,
  memoryMb: 256,
};

describe('the cost model', () => {
  it('makes one upstream request per key per refresh interval, whatever the number of containers', () => {
    // 24 h of one-hour tokens refreshed at 45 minutes: 32 intervals.
    for (const containers of [1, 100, 900]) {
      const usage = brokerUsage({ ...scenario, containers }, measured);
      expect([usage.memoryHits, usage.tableHits, usage.misses, usage.upstream]).toEqual([999_000, 968, 32, 32]);
    }
    expect(brokerUsage({ ...scenario, keys: 3 }, measured).upstream).toBe(96);
  });

  it('counts every service by the calls of each path', () => {
    const usage = brokerUsage(scenario, measured);
    expect(usage).toMatchObject({
      dynamodbReadUnits: 500,
      dynamodbWriteUnits: 64,
      kms: 1000,
      sts: 1_000_000,
      secretsManager: 32,
      lambdaRequests: 1_000_000,
    });
  });

  it('makes the naive broker fetch on every memory miss and read the secret per cold start', () => {
    const usage = naiveUsage(scenario, measured);
    expect(usage).toMatchObject({ upstream: 1000, secretsManager: 100, dynamodbReadUnits: 0, kms: 0, sts: 1_000_000 });
  });

  it('refuses a warm-hit ratio that leaves fewer memory misses than cold starts or refreshes', () => {
    expect(() => paths({ ...scenario, warmHitRatio: 0.99995 })).toThrow(
      'a warm-hit ratio of 0.99995 leaves 50 requests to memory misses, fewer than the 100 cold starts or the 32 refreshes',
    );
    expect(() => paths({ ...scenario, warmHitRatio: 1.5 })).toThrow('--warm-hit-ratio must be between 0 and 1');
  });

  it('prices arm64 duration 20 % below x86_64 and totals each architecture', () => {
    const rows = costRows(brokerUsage(scenario, measured), naiveUsage(scenario, measured));
    const row = (name: string) => rows.find((r) => r[0] === name)!;
    expect(row('Lambda GB-seconds on arm64')[1]).toBe('$13.3334');
    expect(row('Lambda GB-seconds on x86_64')[1]).toBe('$16.6667');
    expect(row('upstream token requests').slice(2)).toEqual(['32', '$0.07', '1,000', '$2.25']);
    const [arm, x86] = [row('total, functions on arm64'), row('total, functions on x86_64')];
    expect(Number(arm[3]!.slice(1))).toBeLessThan(Number(x86[3]!.slice(1)));
    expect(Number(arm[5]!.slice(1))).toBeGreaterThan(Number(arm[3]!.slice(1)));
  });
});
