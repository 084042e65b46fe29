/**
 * What moving logs and metrics to Powertools for AWS Lambda (issue 14) costs: bundle bytes and bundle load time
 * before and after the switch (recorded), beside this run's. The budget is 40 KB of bundle.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';

/**
 * Recorded at the switch: the bundles of commit 8110807 (before) and of the tree right after it moved to
 * Powertools (after), built by scripts/build.mjs, and the token bundle loaded in a fresh Node 20 process as below,
 * 60 runs of each interleaved on one busy 2-core machine. Load times there move by tens of percent with whatever
 * else runs: compare before and after, measured at the same moment, more than either with this run's.
 */
const RECORDED = {
  commit: '8110807',
  bytes: { token: [428_346, 460_611], prewarm: [419_078, 451_330] } as Record<string, [before: number, after: number]>,
  tokenLoadMs: { p50: [112.74, 115.5], min: [76.97, 80.43] } as Record<'p50' | 'min', [before: number, after: number]>,
};
const MAX_GROWTH_BYTES = 40 * 1024;

const loadMs = (file: string): number =>
  Number(
    execFileSync(process.execPath, [
      '-e',
      `const t=process.hrtime.bigint(); require('${file}'); console.log(Number(process.hrtime.bigint()-t)/1e6)`,
    ])
      .toString()
      .trim(),
  );

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const ms = (v: number) => `${v.toFixed(2)} ms`;

/** Rows for the bench's table: bundle bytes per function and the token bundle's load time. */
export const powertoolsCost = (runs = 10): string[][] => {
  const rows = [
    ['', `before (${RECORDED.commit})`, 'after (recorded)', 'this run', 'growth (this run)', 'within 40 KB'],
  ];
  for (const [fn, [before, after]] of Object.entries(RECORDED.bytes)) {
    const file = `dist/${fn}/handler.js`;
    if (!existsSync(file)) continue;
    const now = statSync(file).size;
    const growth = now - before;
    const percent = ((100 * growth) / before).toFixed(1);
    rows.push([
      `${file} bytes`,
      String(before),
      String(after),
      String(now),
      `${(growth / 1024).toFixed(1)} KiB (${percent} %)`,
      growth <= MAX_GROWTH_BYTES ? 'yes' : 'NO',
    ]);
  }
  const samples = Array.from({ length: runs }, () => loadMs('./dist/token/handler.js'));
  const { p50, min } = RECORDED.tokenLoadMs;
  rows.push(['dist/token/handler.js load, p50', ms(p50[0]), ms(p50[1]), ms(median(samples)), '', '']);
  rows.push(['dist/token/handler.js load, min', ms(min[0]), ms(min[1]), ms(Math.min(...samples)), '', '']);
  return rows;
};
