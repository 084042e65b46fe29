/**
 * Lambda entry point of the token function (see functions/lib/handlers/token-handler.ts). Loading this module is the
 * init phase: the container's runtime (configuration, AWS clients, caches) is built here, once.
 */

import { createTokenHandler } from '../lib/handlers/token-handler';
import { createRuntime, loggerFromEnv } from '../lib/runtime';

export const handler = createTokenHandler(
  () => createRuntime(process.env),
  () => loggerFromEnv(process.env),
);
