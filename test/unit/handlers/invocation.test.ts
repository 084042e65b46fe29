import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../functions/lib/config/load-config';
import { initRuntime } from '../../../functions/lib/handlers/invocation';
import { createPowertoolsLogger, Logger } from '../../../functions/lib/shared/logger';

describe('a container whose configuration is invalid', () => {
  it('answers an invocation without a request id the bare misconfiguration, and logs the cause', () => {
    const logged: unknown[] = [];
    const fallback = new Logger(createPowertoolsLogger({ POWERTOOLS_LOG_LEVEL: 'SILENT' }));
    fallback.error = (message, fields) => void logged.push({ message, ...fields });
    const runtimeFor = initRuntime(
      () => loadConfig({}) as never,
      () => fallback,
    );
    expect(runtimeFor(undefined)).toEqual({
      error: {
        error: 'server_error',
        error_description: 'the broker is misconfigured; the platform team can find the cause in its logs',
        status: 500,
      },
    });
    expect(logged).toEqual([
      expect.objectContaining({ message: 'broker configuration invalid', reason: 'config_invalid' }),
    ]);
  });
});
