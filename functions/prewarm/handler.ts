import { createRuntime, loggerFromEnv } from '../lib/runtime';
import { createPrewarmHandler } from '../lib/prewarm-handler';

/** Lambda entry point of the scheduled prewarm function: see functions/lib/prewarm-handler.ts. */
export const handler = createPrewarmHandler(
  () => createRuntime(process.env),
  () => loggerFromEnv(process.env),
);
