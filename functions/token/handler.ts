import { loggerFromEnv, createRuntime } from '../lib/runtime';
import { createTokenHandler } from '../lib/way-in/token-handler';

/** Lambda entry point of the token function: see functions/lib/way-in/token-handler.ts. */
export const handler = createTokenHandler(
  () => createRuntime(process.env),
  () => loggerFromEnv(process.env),
);
