/**
 * The model checker: runs the model (world.ts) over fast-check's random scenarios and schedules with a budget, counts
 * the schedules explored and those that break a property, and gives for each violation the seed and path that replay
 * it (fast-check's `seed` and `path`: the run's index, then the shrinking steps) and the run's trace.
 */
import fc from 'fast-check';
import { type Scenario, scenarioArb } from './operations';
import type { Trace } from './trace';
import { type KnownIssue, type Violation, ViolationError } from './violations';
import { World, type WorldOptions } from './world';

export interface CheckOptions extends WorldOptions {
  runs: number;
  seed?: number;
  /** Replays this run (and its shrinking steps) only. */
  path?: string;
  maxTicks?: number;
  /** Containers serve overlapping invocations in every run (true), in none (false); default: in half of them. */
  overlap?: boolean;
  /** Stop at the first violation (else every run of the budget is explored). */
  stopAtFirst?: boolean;
}

export interface Failure {
  seed: number;
  path: string;
  violation: Violation;
  trace: Trace;
  scenario: Scenario;
}

export interface CheckResult {
  seed: number;
  explored: number;
  violations: number;
  failures: Failure[];
  /** Per known issue: how many runs met it, and the first of them. */
  known: Partial<Record<KnownIssue, { runs: number; first: Failure }>>;
  elapsedMs: number;
  /** Summed over the runs (World.stats). */
  stats: Record<string, number>;
}

/** Failures kept with their traces (the first ones). */
const KEPT = Number(process.env.MODEL_KEPT ?? 5);

export const runModelCheck = async (options: CheckOptions): Promise<CheckResult> => {
  const seed = options.seed ?? Date.now() % 2 ** 31;
  const failures: Failure[] = [];
  const known: CheckResult['known'] = {};
  const stats: Record<string, number> = {};
  let explored = 0;
  let violations = 0;
  const startedMs = performance.now();
  const runIndex = options.path === undefined ? undefined : Number(options.path.split(':')[0]);
  let current: World | undefined;
  const floating = (reason: unknown) =>
    current?.violations.add(
      'floatingRejection',
      reason instanceof Error ? `${reason.name}: ${reason.message}` : String(reason),
    );
  process.on('unhandledRejection', floating);
  const property = fc.asyncProperty(
    fc.scheduler(),
    scenarioArb(options.maxTicks, options.overlap),
    async (scheduler, scenario) => {
      const index = runIndex ?? explored;
      explored += 1;
      const world = new World(scheduler, scenario, options);
      current = world;
      try {
        await world.run();
      } catch (err) {
        if (!(err instanceof ViolationError)) throw err;
        violations += 1;
        if (failures.length < KEPT)
          failures.push({
            seed,
            path: options.path ?? String(index),
            violation: err.violation,
            trace: world.trace,
            scenario,
          });
        if (options.stopAtFirst || options.path !== undefined) throw err;
      } finally {
        for (const [k, v] of Object.entries(world.stats)) stats[k] = (stats[k] ?? 0) + v;
        for (const issue of new Set(world.violations.known.map((v) => v.known!))) {
          const violation = world.violations.known.find((v) => v.known === issue)!;
          const first = { seed, path: options.path ?? String(index), violation, trace: world.trace, scenario };
          known[issue] = { runs: (known[issue]?.runs ?? 0) + 1, first: known[issue]?.first ?? first };
        }
      }
    },
  );
  const details = await fc
    .check(property, {
      numRuns: options.path === undefined ? options.runs : 1,
      seed,
      ...(options.path === undefined ? {} : { path: options.path }),
      endOnFailure: true,
    })
    .finally(() => process.off('unhandledRejection', floating));
  if (details.failed && details.errorInstance && !(details.errorInstance instanceof ViolationError))
    throw details.errorInstance;
  return {
    seed,
    explored: options.path === undefined ? explored : 1,
    violations: options.path === undefined ? violations : Math.min(violations, 1),
    failures,
    known,
    elapsedMs: performance.now() - startedMs,
    stats,
  };
};

/** Shrinks a failure to a shorter run that breaks the same property; returns it with its path. */
export const shrinkFailure = async (failure: Failure, options: Omit<CheckOptions, 'runs'> = {}): Promise<Failure> => {
  let smallest = failure;
  const arb = scenarioArb(options.maxTicks, options.overlap);
  const property = fc.asyncProperty(fc.scheduler(), arb, async (scheduler, scenario) => {
    const world = new World(scheduler, scenario, options);
    try {
      await world.run();
    } catch (err) {
      if (err instanceof ViolationError && err.violation.property === failure.violation.property) {
        smallest = { ...failure, violation: err.violation, trace: world.trace, scenario };
        throw err;
      }
    }
  });
  const details = await fc.check(property, { seed: failure.seed, path: failure.path, numRuns: 1 });
  return details.failed && details.counterexamplePath ? { ...smallest, path: details.counterexamplePath } : smallest;
};
