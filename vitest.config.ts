import { defineConfig } from 'vitest/config';

export default defineConfig({
  // tsconfig.json "paths": the caller package (@limitrail/token-broker-client) from its sources, no build needed.
  resolve: { tsconfigPaths: true },
  test: {
    include: ['test/**/*.test.ts', 'clients/node/test/**/*.test.ts'],
    // Integration tests start real processes on loopback (moto_server, the sandbox, osls).
    // Individual slow tests set their own, larger timeouts.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Child processes and process-wide env per test file: separate processes, not threads.
    pool: 'forks',
    // Two files at a time: vitest's default on a 2-core machine is one, but most integration files wait on child
    // processes (moto, osls, the sandbox), so two overlap well (measured here: 200 s against 307 s for vitest).
    maxWorkers: 2,
    env: {
      // Tests run on Node 20 here and the function on nodejs24.x in Lambda: the SDK's notice that its
      // versions published after the first week of January 2027 need Node 22 would only bury the test output.
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    },
  },
});
