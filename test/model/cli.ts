/**
 * `npm run model-check -- [--runs N] [--seed S] [--path P] [--no-shrink]`: checks the lease protocol over N random
 * scenarios and schedules (default 1000), prints `N schedules explored, K violations` and, for a violation, the seed
 * and path that replay it and the trace of the run (shrunk to a shorter one that breaks the same property, unless
 * --no-shrink). With --path, replays that one run and prints its trace. Exits 1 when a property was broken.
 * --overlap / --one-at-a-time: every container serves overlapping invocations (Lambda Managed Instances) / one at a
 * time (default: half the runs each); --strict: known issues count as violations; --break NAME:
 * runs against a deliberately broken table (breaks.ts) and stops at the first violation.
 */
import { parseArgs } from 'node:util';
import { BREAKS, type BreakName } from './breaks';
import { type Failure, runModelCheck, shrinkFailure } from './checker';
import { describeOperation } from './operations';
import { PROPERTIES } from './violations';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '1000' },
    seed: { type: 'string' },
    path: { type: 'string' },
    'no-shrink': { type: 'boolean', default: false },
    overlap: { type: 'boolean' },
    'one-at-a-time': { type: 'boolean' },
    strict: { type: 'boolean', default: false },
    break: { type: 'string' },
    'max-ticks': { type: 'string' },
  },
});

const integer = (name: string, text: string | undefined): number | undefined => {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) {
    console.error(`--${name} must be a non-negative integer`);
    process.exit(2);
  }
  return n;
};

const show = (failure: Failure, title: string): void => {
  const { violation, seed, path, trace, scenario } = failure;
  console.log(
    `\n${title}: ${violation.property} at ${trace.at(violation.trueMs)}${violation.known ? ` (known issue ${violation.known})` : ''}`,
  );
  console.log(`  ${PROPERTIES[violation.property]}`);
  console.log(`  ${violation.detail}`);
  console.log(`  replay: npm run model-check -- --seed ${seed} --path ${path}${replayFlags}`);
  const ticks = scenario.ticks
    .map((t) => {
      const ops = t.ops.map((o) => describeOperation(o, (c) => `c${(c % scenario.containers) + 1}`)).join('; ');
      const then = 'steps' in t.after ? `${t.after.steps} steps` : `+${t.after.advanceMs} ms`;
      return `    [${ops}] then ${then}`;
    })
    .join('\n');
  const { refreshLeaseMs, forceRefreshMinIntervalSec } = scenario.settings;
  const fleet = `${scenario.containers} containers${scenario.overlap ? ', overlapping invocations' : ''}`;
  const settings = `REFRESH_LEASE_MS ${refreshLeaseMs}, FORCE_REFRESH_MIN_INTERVAL_SEC ${forceRefreshMinIntervalSec}`;
  console.log(`  scenario (${fleet}; ${settings}):\n${ticks}`);
  console.log(`  trace (true time, container, its clock):\n${trace.format(400)}`);
};

const breakName = values.break;
if (breakName !== undefined && !(breakName in BREAKS)) {
  console.error(`--break must be one of ${Object.keys(BREAKS).join(', ')}`);
  process.exit(2);
}
const below = breakName === undefined ? undefined : BREAKS[breakName as BreakName];

const overlap = values.overlap ? true : values['one-at-a-time'] ? false : undefined;
/** What a replay must repeat besides seed and path: whatever shapes the generated runs or the table. */
const replayFlags = [
  overlap === true ? ' --overlap' : overlap === false ? ' --one-at-a-time' : '',
  values['max-ticks'] === undefined ? '' : ` --max-ticks ${values['max-ticks']}`,
  values.strict ? ' --strict' : '',
  breakName === undefined ? '' : ` --break ${breakName}`,
].join('');

const main = async () => {
  const runs = integer('runs', values.runs) ?? 1000;
  const maxTicks = integer('max-ticks', values['max-ticks']);
  const result = await runModelCheck({
    runs,
    seed: integer('seed', values.seed),
    path: values.path,
    maxTicks,
    overlap,
    strict: values.strict,
    below,
    stopAtFirst: below !== undefined,
  });
  const perSecond = result.explored / (result.elapsedMs / 1000);
  console.log(`${result.explored} schedules explored, ${result.violations} violations`);
  console.log(
    `seed ${result.seed}; ${(result.elapsedMs / 1000).toFixed(1)} s, ${perSecond.toFixed(0)} schedules/s; ` +
      Object.entries(result.stats)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => `${k} ${v}`)
        .join(', '),
  );
  const known = Object.entries(result.known);
  if (known.length > 0) {
    console.log(`known issues met (not counted; --strict counts them):`);
    for (const [issue, { runs: n, first }] of known)
      console.log(
        `  ${issue} in ${n} runs, first --seed ${first.seed} --path ${first.path}: ${first.violation.detail}`,
      );
  }
  const first = result.failures[0];
  if (!first) return;
  const others = result.failures.slice(1).map((f) => `--path ${f.path} (${f.violation.property})`);
  if (others.length > 0) console.log(`other violating runs (seed ${result.seed}): ${others.join(', ')}`);
  show(first, values.path === undefined ? 'first violation' : 'replayed violation');
  if (values.path === undefined && !values['no-shrink'])
    show(await shrinkFailure(first, { maxTicks, overlap, strict: values.strict, below }), 'shrunk');
  process.exitCode = 1;
};

await main();
