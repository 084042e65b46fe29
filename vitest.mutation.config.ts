import { defineConfig } from 'vitest/config';
import base from './vitest.config';

/**
 * The tests Stryker runs against each mutant (stryker.config.mjs): the fast ones, test/unit, no integration test
 * (they start real processes and take minutes). Stryker runs them in one worker thread per Stryker worker.
 */
export default defineConfig({
  ...base,
  test: { ...base.test, include: ['test/unit/**/*.test.ts', 'test/model/**/*.test.ts'] },
});
