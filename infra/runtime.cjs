// The Lambda runtime and CPU architecture of both functions, from the stage parameters `runtime` and
// `architecture` (serverless.yml, params). Anything but a supported value fails the packaging, and so does a
// bundle built for a newer Node than the stage's runtime: dist/<fn>/build.json, written by scripts/build.mjs,
// names the runtime the bundle was built for (esbuild's target is that runtime's Node major).
//
// Also read by scripts/build.mjs (which runtime to build for) and the tests (test/support/node-runtimes.ts: which
// Node major to run the bundles on), so the supported set and the default are written once, here and in
// serverless.yml.
'use strict';
const { existsSync, readFileSync, readdirSync } = require('node:fs');
const { join } = require('node:path');

// The Lambda Node runtimes the broker is built and tested for. nodejs22.x is deprecated on 30 April 2027;
// nodejs24.x is supported until April 2028. Node 20 (nodejs20.x) is deprecated already: refused.
const SUPPORTED_RUNTIMES = ['nodejs22.x', 'nodejs24.x'];
const ARCHITECTURES = ['arm64', 'x86_64'];

/** nodejs24.x -> 24. */
const majorOf = (runtime) => {
  const match = /^nodejs(\d+)\.x$/.exec(runtime);
  if (!match) throw new Error(`${JSON.stringify(runtime)} is not a nodejs<major>.x runtime`);
  return Number(match[1]);
};

const checked = (value, allowed, name) => {
  if (!allowed.includes(value)) {
    throw new Error(`parameter ${name} ${JSON.stringify(value)} must be one of ${allowed.join(', ')}`);
  }
  return value;
};

/** esbuild's target for a runtime: its Node major (nodejs24.x -> node24). */
const esbuildTarget = (runtime) => `node${majorOf(checked(runtime, SUPPORTED_RUNTIMES, 'runtime'))}`;

/**
 * A stage's `runtime` parameter as serverless.yml sets it (the stage's own params block, else `default`), read
 * from the text without resolving variables. A `--param runtime=...` on the command line is not seen here; the
 * packaging check below still catches a bundle built for a newer Node than the stage deploys on.
 */
const stageRuntime = (serverlessYml, stage) => {
  const blocks = {};
  let inParams = false;
  let block;
  for (const line of serverlessYml.split('\n')) {
    if (/^\S/.test(line)) inParams = /^params:\s*$/.test(line);
    else if (inParams && /^ {2}[\w-]+:\s*$/.test(line)) block = line.trim().slice(0, -1);
    else if (inParams && block) {
      const match = /^ {4}runtime:\s*["']?([\w.]+)["']?\s*(#.*)?$/.exec(line);
      if (match) blocks[block] = match[1];
    }
  }
  const runtime = (stage && blocks[stage]) ?? blocks.default;
  if (!runtime) throw new Error('serverless.yml sets no params.default.runtime');
  return checked(runtime, SUPPORTED_RUNTIMES, 'runtime');
};

/** The runtime the default stage deploys on (serverless.yml params.default.runtime). */
const defaultRuntime = (root) => stageRuntime(readFileSync(join(root, 'serverless.yml'), 'utf8'), undefined);

/** Why the bundles in `distDir` cannot be packaged for `runtime` (undefined when they can). */
const bundleProblem = (distDir, runtime) => {
  if (!existsSync(distDir)) return 'dist/ is missing: run `npm run build`';
  for (const entry of readdirSync(distDir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const file = join(distDir, entry.name, 'build.json');
    if (!existsSync(file)) return `dist/${entry.name}/build.json is missing: run \`npm run build\``;
    const built = JSON.parse(readFileSync(file, 'utf8')).runtime;
    if (majorOf(built) > majorOf(runtime)) {
      return (
        `dist/${entry.name} was built for ${built}, newer than the stage's runtime ${runtime}: ` +
        `run \`npm run build -- --runtime ${runtime}\` (or --stage <stage>) before packaging`
      );
    }
  }
  return undefined;
};

module.exports = {
  SUPPORTED_RUNTIMES,
  ARCHITECTURES,
  majorOf,
  esbuildTarget,
  stageRuntime,
  defaultRuntime,
  bundleProblem,
  // serverless.yml: provider.runtime and provider.architecture.
  runtime: async ({ resolveVariable }) => {
    const runtime = checked(await resolveVariable('param:runtime'), SUPPORTED_RUNTIMES, 'runtime');
    const problem = bundleProblem(join(__dirname, '..', 'dist'), runtime);
    if (problem) throw new Error(problem);
    return runtime;
  },
  architecture: async ({ resolveVariable }) =>
    checked(await resolveVariable('param:architecture'), ARCHITECTURES, 'architecture'),
};
