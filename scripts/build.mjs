#!/usr/bin/env node
// Bundles every functions/<name>/handler.ts into dist/<name>/handler.js for Lambda (`npm run build`), and builds
// the caller package clients/node into clients/node/dist/ (scripts/build-node-client.mjs).
//
// - CommonJS, platform node, target the Node major of the Lambda runtime the bundles deploy on: serverless.yml's
//   params.default.runtime (nodejs24.x -> node24), or a stage's own (`npm run build -- --stage <stage>`), or
//   `--runtime nodejs22.x`. dist/<name>/build.json records it; packaging refuses a bundle built for a newer Node
//   than the stage's runtime (infra/runtime.cjs). The sources use nothing newer than Node 20 (today the node20 and
//   node24 outputs are byte for byte the same), so the same bundle also runs on the Node 20 used locally
//   (serverless-offline loads dist/, not the sources), and the tests run it there as well as on the runtime's major.
// - The AWS SDK is bundled, not taken from the runtime: the pinned versions in package.json are the
//   ones we test against, and the runtime's copy changes under us without notice.
// - dist/<name>/package.json says "commonjs" because the repository root is "type": "module"; without
//   it Node (and serverless-offline) would load handler.js as ESM and fail on `exports`.
// - dist/<name>/meta.json is esbuild's metafile (inspect with https://esbuild.github.io/analyze/);
//   serverless.yml packages only handler.js and package.json.

import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';
import { buildNodeClient } from './build-node-client.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const functionsDir = join(root, 'functions');
const distDir = join(root, 'dist');
const { defaultRuntime, esbuildTarget, stageRuntime } = createRequire(import.meta.url)('../infra/runtime.cjs');

/** The Lambda runtime to build for: --runtime, else --stage's (serverless.yml), else the default stage's. */
const runtimeToBuildFor = () => {
  const { values } = parseArgs({ options: { runtime: { type: 'string' }, stage: { type: 'string' } } });
  if (values.runtime) return values.runtime;
  if (values.stage) return stageRuntime(readFileSync(join(root, 'serverless.yml'), 'utf8'), values.stage);
  return defaultRuntime(root);
};

/** Function names: every functions/<name>/ that has a handler.ts (functions/lib has none). */
const findFunctions = () =>
  readdirSync(functionsDir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && existsSync(join(functionsDir, entry.name, 'handler.ts')))
    .map((entry) => entry.name)
    .sort();

const bundle = async (name, runtime) => {
  const outDir = join(distDir, name);
  await mkdir(outDir, { recursive: true });
  const result = await build({
    absWorkingDir: root,
    entryPoints: [join(functionsDir, name, 'handler.ts')],
    outfile: join(outDir, 'handler.js'),
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: esbuildTarget(runtime),
    // Prefer the SDK's ES module builds: esbuild tree-shakes those far better than the CommonJS ones.
    mainFields: ['module', 'main'],
    minify: true,
    treeShaking: true,
    sourcemap: false,
    legalComments: 'none',
    metafile: true,
    logLevel: 'warning',
  });
  if (result.errors.length > 0) throw new Error(`esbuild reported ${result.errors.length} error(s) for ${name}`);
  await writeFile(join(outDir, 'package.json'), `${JSON.stringify({ type: 'commonjs' }, null, 2)}\n`);
  await writeFile(join(outDir, 'meta.json'), JSON.stringify(result.metafile));
  await writeFile(
    join(outDir, 'build.json'),
    `${JSON.stringify({ runtime, target: esbuildTarget(runtime) }, null, 2)}\n`,
  );
  const bytes = statSync(join(outDir, 'handler.js')).size;
  return { name, file: relative(root, join(outDir, 'handler.js')), bytes };
};

const printSizes = (rows) => {
  const width = Math.max(...rows.map((r) => r.file.length), 'bundle'.length);
  const line = (a, b, c) => `${a.padEnd(width)}  ${b.padStart(10)}  ${c.padStart(9)}`;
  console.log(line('bundle', 'bytes', 'KiB'));
  for (const r of rows) console.log(line(r.file, String(r.bytes), (r.bytes / 1024).toFixed(1)));
};

const main = async () => {
  const runtime = runtimeToBuildFor();
  const names = findFunctions();
  if (names.length === 0) throw new Error('no functions/<name>/handler.ts found');
  const started = Date.now();
  const [rows, clientFiles] = await Promise.all([
    Promise.all(names.map((name) => bundle(name, runtime))),
    buildNodeClient(root),
  ]);
  // A removed function's stale bundle must never be packaged. (dist/ itself is not wiped first, so
  // tests reading dist/ while someone rebuilds never find it missing.)
  for (const entry of readdirSync(distDir, { withFileTypes: true })) {
    if (!names.includes(entry.name)) rmSync(join(distDir, entry.name), { recursive: true, force: true });
  }
  const clientRows = clientFiles.map((file) => ({ file, bytes: statSync(join(root, file)).size }));
  printSizes([...rows, ...clientRows]);
  console.log(
    `built ${rows.length} function(s) for ${runtime} (esbuild target ${esbuildTarget(runtime)}) and the Node client package in ${Date.now() - started} ms`,
  );
};

main().catch((err) => {
  // esbuild has already printed its diagnostics (logLevel 'warning'); add a one-line verdict.
  const count = Array.isArray(err?.errors) ? err.errors.length : 0;
  console.error(
    count > 0 ? `build failed: ${count} esbuild error(s), shown above` : `build failed: ${err?.stack ?? err}`,
  );
  process.exit(1);
});
