#!/usr/bin/env node
// `npm run mutation`: Stryker over functions/lib against the unit tests (stryker.config.mjs), then the mutation score
// per folder and every surviving mutant, one line each, from Stryker's JSON report. docs/design.md "Testing".
//
//   npm run mutation                                   every file of functions/lib (about an hour on two cores)
//   npm run mutation -- functions/lib/cache            one folder and its subfolders
//   npm run mutation -- --mutate 'functions/lib/handlers/function-url.ts'   any Stryker option is passed on
//   npm run mutation -- --summary [report.json ...]     only the summary of reports already written (several: summed)
//
// Survivors someone reviewed and found equivalent or acceptable are listed, with the reason, in
// scripts/mutation-reviewed.json (matched by file, mutator, original text and replacement, not by line, so edits
// elsewhere in a file keep them matched). The summary counts them apart and lists in full only the survivors nobody
// reviewed yet: each of those needs a test that kills it, or an entry there saying why not.
//
// Score, as Stryker counts it: (killed + timed out) / (killed + timed out + survived + no coverage). Mutants that do
// not compile (the TypeScript checker drops them) and static ones left out of the run (ignoreStatic) do not count.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, posix, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const REPORT = 'reports/mutation/mutation.json';
const MUTATED_ROOT = 'functions/lib';

const UNDETECTED = new Set(['Survived', 'NoCoverage']);
const REVIEWED = join(root, 'scripts', 'mutation-reviewed.json');

/** What identifies a mutant across edits of its file: not its line. */
const mutantKey = (file, mutatorName, original, replacement) =>
  JSON.stringify([file, mutatorName, oneLine(original, 400), oneLine(replacement ?? '', 400)]);

/** The reviewed survivors: key -> { verdict, reason }. */
const readReviewed = () => {
  if (!existsSync(REVIEWED)) return new Map();
  const entries = JSON.parse(readFileSync(REVIEWED, 'utf8'));
  return new Map(entries.map((e) => [mutantKey(e.file, e.mutator, e.original, e.replacement), e]));
};

/** Folder of a mutated file, relative to functions/lib ('.' for its top level). */
const folderOf = (file) => {
  const dir = posix.dirname(relative(root, join(root, file)).split('\\').join('/'));
  return dir === MUTATED_ROOT ? '.' : dir.startsWith(`${MUTATED_ROOT}/`) ? dir.slice(MUTATED_ROOT.length + 1) : dir;
};

const emptyRow = () => ({
  Killed: 0,
  Timeout: 0,
  Survived: 0,
  NoCoverage: 0,
  CompileError: 0,
  RuntimeError: 0,
  Ignored: 0,
});

const score = (row) => {
  const detected = row.Killed + row.Timeout;
  const valid = detected + row.Survived + row.NoCoverage;
  return valid === 0 ? 'n/a' : `${((100 * detected) / valid).toFixed(2)}`;
};

/** The text a mutant replaced, from the file's source and the mutant's location (1-based lines, 1-based columns). */
const originalText = (source, { start, end }) => {
  const lines = source.split('\n');
  if (start.line === end.line) return lines[start.line - 1].slice(start.column - 1, end.column - 1);
  return [
    lines[start.line - 1].slice(start.column - 1),
    ...lines.slice(start.line, end.line - 1),
    lines[end.line - 1].slice(0, end.column - 1),
  ].join('\n');
};

const oneLine = (text, max = 90) => {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
};

/** Rows of equal keys as an aligned text table (first column left-aligned, the numbers right-aligned). */
const printTable = (rows) => {
  const keys = Object.keys(rows[0]);
  const cells = [keys, ...rows.map((row) => keys.map((k) => String(row[k])))];
  const widths = keys.map((_, i) => Math.max(...cells.map((line) => line[i].length)));
  for (const line of cells) {
    console.log(`  ${line.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ')}`);
  }
};

export const summarize = (reportPaths) => {
  const reviewed = readReviewed();
  const rows = new Map();
  const undetected = [];
  const matched = new Set();
  for (const path of reportPaths) {
    const report = JSON.parse(readFileSync(path, 'utf8'));
    for (const [file, { source, mutants }] of Object.entries(report.files)) {
      const folder = folderOf(file);
      if (!rows.has(folder)) rows.set(folder, { ...emptyRow(), Reviewed: 0 });
      const row = rows.get(folder);
      for (const mutant of mutants) {
        if (mutant.status in row) row[mutant.status] += 1;
        if (!UNDETECTED.has(mutant.status)) continue;
        const key = mutantKey(file, mutant.mutatorName, originalText(source, mutant.location), mutant.replacement);
        const review = reviewed.get(key);
        if (review) {
          row.Reviewed += 1;
          matched.add(key);
        }
        undetected.push({ file, source, mutant, review });
      }
    }
  }
  const total = { ...emptyRow(), Reviewed: 0 };
  for (const row of rows.values()) for (const key of Object.keys(total)) total[key] += row[key];
  const table = [...[...rows].sort(([a], [b]) => a.localeCompare(b)), ['all', total]].map(([folder, row]) => ({
    folder,
    score: score(row),
    killed: row.Killed,
    timeout: row.Timeout,
    survived: row.Survived,
    'no coverage': row.NoCoverage,
    'of which reviewed': row.Reviewed,
    'not reviewed': row.Survived + row.NoCoverage - row.Reviewed,
    'not compiling': row.CompileError,
    'runtime error': row.RuntimeError,
    'static, skipped': row.Ignored,
  }));
  console.log(
    `\nMutation score per folder of ${MUTATED_ROOT} (${reportPaths.map((p) => relative(root, p)).join(', ')}):`,
  );
  printTable(table);
  const open = undetected.filter((u) => !u.review);
  const byVerdict = (verdict) => undetected.filter((u) => u.review?.verdict === verdict).length;
  console.log(
    `\n${undetected.length - open.length} undetected mutants reviewed in ${relative(root, REVIEWED)} ` +
      `(equivalent ${byVerdict('equivalent')}, acceptable ${byVerdict('acceptable')}).`,
  );
  if (open.length > 0) {
    console.log(
      `\n${open.length} mutants not detected and not reviewed (Survived: a test ran and passed; NoCoverage: no test ran):`,
    );
    open.sort((a, b) => a.file.localeCompare(b.file) || a.mutant.location.start.line - b.mutant.location.start.line);
    for (const { file, source, mutant } of open) {
      const { line, column } = mutant.location.start;
      const before = oneLine(originalText(source, mutant.location));
      const after = oneLine(mutant.replacement ?? '');
      console.log(
        `  ${mutant.status === 'NoCoverage' ? 'NoCoverage' : 'Survived  '} ${file}:${line}:${column} ${mutant.mutatorName}: ${before} -> ${after}`,
      );
    }
  }
  const mutatedFiles = new Set(undetected.map((u) => u.file));
  const stale = [...reviewed].filter(([key, e]) => !matched.has(key) && mutatedFiles.has(e.file)).map(([, e]) => e);
  if (stale.length > 0) {
    console.log(`\n${stale.length} reviewed entries match no undetected mutant now (killed, or the code changed):`);
    for (const e of stale) console.log(`  ${e.file} ${e.mutator}: ${oneLine(e.original)} -> ${oneLine(e.replacement)}`);
  }
  return { open: open.length };
};

const args = process.argv.slice(2);
if (args[0] === '--summary') {
  const paths = args.length > 1 ? args.slice(1) : [join(root, REPORT)];
  summarize(paths);
} else {
  // A folder given by path stands for its files and its subfolders' files: `--mutate '<folder>/**/*.ts'`.
  const folders = args.filter((a) => !a.startsWith('-') && existsSync(a) && statSync(a).isDirectory());
  const rest = args.filter((a) => !folders.includes(a));
  const mutate = folders.map((f) => `${f.replace(/\/+$/, '')}/**/*.ts`);
  const stryker = join(root, 'node_modules', '.bin', 'stryker');
  const run = spawnSync(stryker, ['run', ...(mutate.length > 0 ? ['--mutate', mutate.join(',')] : []), ...rest], {
    cwd: root,
    stdio: 'inherit',
  });
  if (run.status !== 0) process.exit(run.status ?? 1);
  summarize([join(root, REPORT)]);
}
