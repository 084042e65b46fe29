// Builds the caller package clients/node (@limitrail/token-broker-client) into clients/node/dist/, what its
// package.json "exports" names; called by scripts/build.mjs (`npm run build`).
//
// - dist/esm/index.js (ES module) and dist/cjs/index.js (CommonJS): esbuild, one file each, its dependencies (the
//   pinned AWS SDK packages) left as imports for the service's own install to provide. Not minified: a library's
//   stack traces should be readable.
// - dist/cjs/package.json says "commonjs" (the package is "type": "module").
// - Type declarations: tsc (clients/node/tsconfig.json) into dist/esm/, copied beside the CommonJS build so each
//   format has its own (a .d.ts is read as ESM or CommonJS by the nearest package.json).

import { execFile } from 'node:child_process';
import { copyFileSync, readdirSync, rmSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';

const bundle = (root, packageDir, format, outfile) =>
  build({
    absWorkingDir: root,
    entryPoints: [join(packageDir, 'src', 'index.ts')],
    outfile,
    bundle: true,
    packages: 'external',
    format,
    platform: 'node',
    target: 'node20',
    sourcemap: false,
    legalComments: 'none',
    logLevel: 'warning',
  });

const declarations = async (root, packageDir) => {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  try {
    await promisify(execFile)(process.execPath, [tsc, '-p', join(packageDir, 'tsconfig.json')], { cwd: root });
  } catch (err) {
    throw new Error(
      `tsc (declarations of ${relative(root, packageDir)}) failed:\n${`${err.stdout ?? ''}${err.stderr ?? ''}`.trim()}`,
    );
  }
};

/** Returns the rows `npm run build` prints (file, bytes). */
export const buildNodeClient = async (root) => {
  const packageDir = join(root, 'clients', 'node');
  const distDir = join(packageDir, 'dist');
  const esm = join(distDir, 'esm', 'index.js');
  const cjs = join(distDir, 'cjs', 'index.js');
  await Promise.all([
    bundle(root, packageDir, 'esm', esm),
    bundle(root, packageDir, 'cjs', cjs),
    declarations(root, packageDir),
  ]);
  await mkdir(join(distDir, 'cjs'), { recursive: true });
  await writeFile(join(distDir, 'cjs', 'package.json'), `${JSON.stringify({ type: 'commonjs' }, null, 2)}\n`);
  for (const file of readdirSync(join(distDir, 'esm')).filter((name) => name.endsWith('.d.ts'))) {
    copyFileSync(join(distDir, 'esm', file), join(distDir, 'cjs', file));
  }
  // Not wiped first (a test may be reading dist/ during a rebuild): drop only what no source makes any more.
  const made = new Set([
    'index.js',
    'package.json',
    ...readdirSync(join(packageDir, 'src')).map((name) => name.replace(/\.ts$/, '.d.ts')),
  ]);
  for (const format of ['esm', 'cjs']) {
    for (const file of readdirSync(join(distDir, format)))
      if (!made.has(file)) rmSync(join(distDir, format, file), { recursive: true, force: true });
  }
  return [esm, cjs].map((file) => relative(root, file));
};
