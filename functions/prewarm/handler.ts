/**
 * Lambda entry point of the scheduled prewarm function (see functions/lib/handlers/prewarm-handler.ts). Loading this module
 * is the init phase: the container's runtime is built here, once.
 */

import { createPrewarmHandler } from '../lib/handlers/prewarm-handler';
import { createRuntime, loggerFromEnv } from '../lib/runtime';

export const handler = createPrewarmHandler(
  () => createRuntime(process.env),
  () => loggerFromEnv(process.env),
);
