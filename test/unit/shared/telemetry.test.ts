import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createPowertoolsLogger, Logger } from '../../../functions/lib/shared/logger';
import { EmfWriter } from '../../../functions/lib/shared/metrics';
import { ContainerTelemetry, functionSettingsFromEnv } from '../../../functions/lib/shared/telemetry';
import { captureLogLines, stopCapturing } from '../../support/log-capture';

/** Powertools writes log lines and EMF lines on stdout and stderr: both captured. */
let lines: string[] = [];
const parsed = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
const logLines = () => parsed().filter((l) => !('_aws' in l));
const emfLines = () => parsed().filter((l) => '_aws' in l);
beforeEach(() => {
  lines = captureLogLines([]);
});
afterEach(() => stopCapturing(lines));

const ON_DEMAND = {
  AWS_LAMBDA_FUNCTION_NAME: 'limitrail-token-broker-ci-token',
  AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
  AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '256',
  AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
};
const telemetry = (env: NodeJS.ProcessEnv = ON_DEMAND) =>
  new ContainerTelemetry(
    new Logger(createPowertoolsLogger({})),
    new EmfWriter(env.AWS_LAMBDA_FUNCTION_NAME),
    functionSettingsFromEnv(env),
  );

describe('per-invocation telemetry', () => {
  it('gives overlapping invocations each its own Lambda context on every line and its own EMF line', () => {
    const container = telemetry();
    const first = container.begin({ awsRequestId: 'req-1' });
    const second = container.begin({ awsRequestId: 'req-2', memoryLimitInMB: '512' });
    first.metrics.count('MemoryHits');
    second.log.child({ requestId: 'req-2' }).warn('token request refused', { audit: 'refused' });
    second.metrics.count('Refusals');
    first.log.child({ requestId: 'req-1' }).info('token served', { audit: 'issued' });
    second.metrics.flush(Date.now());
    first.metrics.flush(Date.now());

    expect(logLines()).toEqual([
      expect.objectContaining({ audit: 'refused', requestId: 'req-2', function_request_id: 'req-2' }),
      expect.objectContaining({ audit: 'issued', requestId: 'req-1', function_request_id: 'req-1' }),
    ]);
    const [refused, issued] = logLines();
    // What the context lacks comes from the variables Lambda sets; what it has wins.
    expect(issued).toMatchObject({ function_name: ON_DEMAND.AWS_LAMBDA_FUNCTION_NAME, function_memory_size: '256' });
    expect(refused).toMatchObject({ function_memory_size: '512' });
    expect(emfLines()).toEqual([
      expect.objectContaining({ function_request_id: 'req-2', Refusals: 1 }),
      expect.objectContaining({ function_request_id: 'req-1', MemoryHits: 1, ColdStart: 1 }),
    ]);
    expect(emfLines()[0]).not.toHaveProperty('MemoryHits');
    expect(emfLines()[1]).not.toHaveProperty('Refusals');
  });

  it('says cold start once per on-demand container, in the logs and the metrics of its first invocation only', () => {
    const container = telemetry();
    const invocations = ['a', 'b', 'c'].map((id) => container.begin({ awsRequestId: id }));
    for (const { log, metrics } of invocations.reverse()) {
      log.info('served');
      metrics.count('MemoryHits');
      metrics.flush(Date.now());
    }
    expect(logLines().map((l) => [l.function_request_id, l.cold_start])).toEqual([
      ['c', false],
      ['b', false],
      ['a', true],
    ]);
    expect(emfLines().map((l) => [l.function_request_id, l.ColdStart])).toEqual([
      ['c', undefined],
      ['b', undefined],
      ['a', 1],
    ]);
  });

  it('never says cold start in a container that was not started on demand (provisioned, Managed Instances)', () => {
    const container = telemetry({ ...ON_DEMAND, AWS_LAMBDA_INITIALIZATION_TYPE: 'provisioned-concurrency' });
    const { log, metrics } = container.begin({ awsRequestId: 'req-1' });
    log.info('served');
    metrics.flush(Date.now());
    expect(logLines()).toEqual([expect.objectContaining({ cold_start: false, function_request_id: 'req-1' })]);
    expect(emfLines()).toEqual([]);
  });
});
