import { describe, expect, it } from 'vitest';
import { BREAKS } from './breaks';
import { type Failure, runModelCheck, shrinkFailure } from './checker';
import { KNOWN_ISSUES, type KnownIssue } from './violations';

/**
 * The lease protocol checked over random interleavings (test/model/: the real broker, lease loop and endpoint provider
 * in 2 to 4 simulated containers over one table with DynamoDB's conditions, skewed clocks, crashes, table and endpoint
 * faults; fast-check's scheduler orders every step). This budget runs in `npm test`; a long run is
 * `npm run model-check -- --runs 100000` (docs/design.md, "Testing the lease protocol").
 */
const RUNS = Number(process.env.MODEL_RUNS ?? 4_000);
const SEED = Number(process.env.MODEL_SEED ?? 20_261_129);

const report = (failure: Failure | undefined): string =>
  failure === undefined
    ? ''
    : `${failure.violation.property}: ${failure.violation.detail}\n` +
      `replay: npm run model-check -- --seed ${failure.seed} --path ${failure.path}\n${failure.trace.format(120)}`;

describe('the lease protocol over random schedules', () => {
  it(`breaks no property in ${RUNS} schedules (seed ${SEED})`, { timeout: 120_000 }, async () => {
    const result = await runModelCheck({ runs: RUNS, seed: SEED });
    expect(result.explored).toBe(RUNS);
    expect(result.violations, report(result.failures[0])).toBe(0);
    // The budget went where the protocol is hard: misses, waits, crashes mid-fetch, faults, forced refreshes.
    for (const seen of ['crashes', 'forcedClaims', 'bypassFetches', 'leasesRunOut', 'staleReads', 'answer:stale'])
      expect(result.stats[seen], seen).toBeGreaterThan(0);
  });

  it('replays a failure from its printed seed and path, and shrinks it to a shorter one that replays too', async () => {
    const below = BREAKS.staleAfterWin;
    const found = await runModelCheck({ runs: 500, seed: 7, below, stopAtFirst: true });
    const failure = found.failures[0]!;
    expect(failure.violation.property).toBe('redundantFetch');
    const replayed = await runModelCheck({ runs: 1, seed: failure.seed, path: failure.path, below });
    expect(replayed.failures[0]?.violation).toEqual(failure.violation);
    expect(replayed.failures[0]?.trace.format()).toBe(failure.trace.format());
    const shrunk = await shrinkFailure(failure, { below });
    expect(shrunk.scenario.ticks.length).toBeLessThanOrEqual(failure.scenario.ticks.length);
    const again = await runModelCheck({ runs: 1, seed: shrunk.seed, path: shrunk.path, below });
    expect(again.failures[0]?.violation).toEqual(shrunk.violation);
  });
});

/**
 * Bugs the model check found and that are fixed (docs/design.md, "Found by it"): each replay, strict, passes. Any not
 * fixed yet is in violations.ts KNOWN_ISSUES, with its replay here.
 */
const FIXED_REPLAYS: Record<string, { seed: number; path: string; overlap: boolean }> = {
  'refreshOutlastsMinTtl (an expired token served after a failed refresh ahead)': {
    seed: 1012765293,
    path: '1555',
    overlap: false,
  },
  "flightDeadline (a joiner waiting past its deadline on another's miss)": { seed: 61, path: '0', overlap: true },
  "flightDeadline (a joiner failed with an endpoint time-out cut short by the other's deadline)": {
    seed: 1013614877,
    path: '101',
    overlap: true,
  },
  'pinnedByLatency (a lease written during a take counted as pinned)': { seed: 51, path: '184', overlap: false },
};

describe('bugs the model check found, fixed', () => {
  it.each(Object.entries(FIXED_REPLAYS))('%s: its replay passes', async (_, { seed, path, overlap }) => {
    const result = await runModelCheck({ runs: 1, seed, path, overlap, strict: true });
    expect(result.failures.map((f) => f.violation)).toEqual([]);
  });
});

/** Bugs the model check found that are reported and not fixed yet: each still reproduces from its seed and path. */
const KNOWN_REPLAYS: Record<KnownIssue, { seed: number; path: string; overlap?: boolean }> = {};
const known = Object.keys(KNOWN_ISSUES) as KnownIssue[];

if (known.length > 0) {
  describe('known issues (reported, not fixed yet)', () => {
    it.each(known)('%s still reproduces from its seed and path', async (issue) => {
      const { seed, path, overlap } = KNOWN_REPLAYS[issue]!;
      const result = await runModelCheck({ runs: 1, seed, path, overlap, strict: true });
      expect(result.failures[0]?.violation.known, `${issue} no longer reproduces: remove it from KNOWN_ISSUES`).toBe(
        issue,
      );
    });
  });
}
