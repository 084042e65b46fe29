import { describe, expect, it } from 'vitest';
import { BREAKS, type BreakName } from './breaks';
import { runModelCheck } from './checker';
import type { PropertyName } from './violations';

/**
 * A test of the test: the model check run against deliberately broken lease protocols (breaks.ts, injected through the
 * TokenTable port) finds each within a small share of the CI budget. Seeds are fixed: the numbers of schedules each
 * break took are in the test names' output (and docs/design.md).
 */
const BUDGET = 500;

/** The properties about the table itself: without them, a break must show in what the callers and endpoint see. */
const TABLE_PROPERTIES: PropertyName[] = [
  'leaseStolen',
  'leaseTooLong',
  'leaseLeftBehind',
  'writeOverLease',
  'tokenWentBack',
  'malformedItem',
];

const cases: [BreakName, PropertyName[]][] = [
  ['skipCondition', ['leaseStolen']],
  ['staleAfterWin', ['redundantFetch']],
  ['noSkewBound', ['leaseStolen']],
  ['neverReleases', ['leaseLeftBehind']],
  ['writeOverLonger', ['tokenWentBack']],
  ['neverWins', ['refusedWhileHealthy']],
  ['releaseHangs', ['pastDeadline']],
];

const find = async (name: BreakName, ignore: PropertyName[] = []) => {
  const result = await runModelCheck({ runs: BUDGET, seed: 1, below: BREAKS[name], stopAtFirst: true, ignore });
  const property = result.failures[0]?.violation.property;
  console.info(
    `${name}${ignore.length ? ' (outcome properties only)' : ''}: ${property} after ${result.explored} schedules`,
  );
  return { property, explored: result.explored };
};

describe('the model check finds deliberately broken lease protocols', () => {
  it.each(cases)('finds %s (as %s) within the budget', async (name, expected) => {
    const { property, explored } = await find(name);
    expect(expected).toContain(property);
    expect(explored).toBeLessThanOrEqual(BUDGET);
  });

  it.each([
    ['skipCondition', ['concurrentFetch', 'fetchWithoutLease']],
    ['noSkewBound', ['concurrentFetch', 'fetchWithoutLease']],
    ['staleAfterWin', ['redundantFetch']],
  ] as [BreakName, PropertyName[]][])(
    'finds %s by the upstream requests alone (%s), the table properties left out',
    async (name, expected) => {
      const { property } = await find(name, TABLE_PROPERTIES);
      expect(expected).toContain(property);
    },
  );
});
