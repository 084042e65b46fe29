// Stryker (mutation testing, `npm run mutation`; docs/design.md "Testing"): mutates functions/lib and runs the fast
// tests (vitest.mutation.config.ts: test/unit) against each mutant. Not part of `npm test`: a whole run takes tens
// of minutes on two cores. scripts/mutation.mjs runs it and prints the score per folder from the JSON report.
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.mutation.config.ts' },
  // A mutant that does not type-check is not a test gap: the checker drops it before any test runs.
  checkers: ['typescript'],
  tsconfigFile: 'tsconfig.mutation.json',
  mutate: ['functions/lib/**/*.ts'],
  // Each mutant runs only the tests that reach its code.
  coverageAnalysis: 'perTest',
  // The machine is shared: two workers at most (`-- --concurrency 1` for one).
  concurrency: 2,
  // Mutants of constant initializers (module-level tables, messages) run every test: off by default in the run;
  // they still count in the report as "ignored".
  ignoreStatic: true,
  // Slow fuzzed tests share the workers: give a mutant's run some room before calling it an infinite loop.
  timeoutMS: 10_000,
  reporters: ['clear-text', 'progress', 'json', 'html'],
  clearTextReporter: { allowColor: false, logTests: false, maxTestsToLog: 0, reportScoreTable: true },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  tempDirName: '.stryker-tmp',
  // The sandbox Stryker copies the project into: all the unit tests load (the docs test reads every README).
  ignorePatterns: ['dist', '.serverless', '.local', '.scratch', 'coverage', 'reports'],
  cleanTempDir: 'always',
};
