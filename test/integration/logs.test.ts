import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { METRICS_NAMESPACE } from '../../functions/lib/shared/metrics';
import { type Container, startContainer } from '../support/process/container';
import { bundleRuntimes } from '../support/process/node-runtimes';
import { type BrokerStack, startBrokerStack } from '../support/stacks/broker-stack';

/**
 * What a real invocation writes: the built token bundle in its own process, with the variables Lambda sets (an
 * on-demand container, X-Ray tracing on), against moto_server and the LimitRail sandbox. Its stdout and stderr
 * are what CloudWatch Logs would keep: Powertools log lines and one EMF line per invocation. On this machine's Node
 * and on the deploy runtime's major (Node 24).
 */
const FUNCTION_NAME = 'limitrail-token-broker-test-token';
const TRACE_ID = '1-67a1b2c3-0123456789abcdef01234567';

describe.each(bundleRuntimes().map((runtime) => [runtime.label, runtime] as const))(
  'log lines of a real invocation, on %s',
  (_label, runtime) => {
    let stack: BrokerStack;
    let container: Container;
    const tokens: string[] = [];
    let lines: Record<string, unknown>[] = [];

    beforeAll(async () => {
      stack = await startBrokerStack({ tableName: `tokens-logs-${runtime.version.replace(/\W/g, '')}` });
      container = await startContainer(
        'token',
        {
          ...stack.env,
          AWS_LAMBDA_FUNCTION_NAME: FUNCTION_NAME,
          AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
          AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '256',
          AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
          _X_AMZN_TRACE_ID: `Root=${TRACE_ID};Parent=53995c3f42cd8ad8;Sampled=1`,
        },
        { execPath: runtime.execPath },
      );
      for (const event of [
        { scopes: ['limitrail.usage.read'] }, // a miss: the token endpoint
        { scopes: ['limitrail.usage.read'] }, // a memory hit
        { scopes: ['limitrail.nothing'] }, // a refusal
      ]) {
        const answer = (await container.invoke(event)) as Record<string, unknown>;
        if (typeof answer.access_token === 'string') tokens.push(answer.access_token);
      }
      await container.stop();
      lines = container
        .logs()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    }, 60_000);

    afterAll(async () => {
      await container?.stop();
      await stack?.stop();
    });

    it('carry the Powertools keys, the Lambda context and the audit fields', () => {
      const issued = lines.filter((l) => l.audit === 'issued');
      expect(issued).toHaveLength(2);
      const [first, second] = issued;
      expect(first).toEqual(
        expect.objectContaining({
          level: 'INFO',
          message: 'token served',
          timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
          service: 'limitrail-token-broker',
          cold_start: true,
          function_name: FUNCTION_NAME,
          function_memory_size: '256',
          function_request_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
          xray_trace_id: TRACE_ID,
          sampling_rate: 0,
          caller: 'direct invoke',
          client: 'limitrail',
          scopes: ['limitrail.usage.read'],
          source: 'endpoint',
          tokenFingerprint: expect.stringMatching(/^[0-9a-f]{12}$/),
        }),
      );
      expect(first!.requestId).toBe(first!.function_request_id);
      expect(second).toMatchObject({ cold_start: false, source: 'memory' });
      expect(second!.function_request_id).not.toBe(first!.function_request_id);
    });

    it('log a refusal as a warning with its reason', () => {
      expect(lines.filter((l) => l.audit === 'refused')).toEqual([
        expect.objectContaining({
          level: 'WARN',
          message: 'token request refused',
          error: 'invalid_scope',
          status: 400,
          function_name: FUNCTION_NAME,
        }),
      ]);
    });

    it('contain neither the client secret nor a token handed out', () => {
      expect(tokens).toHaveLength(2);
      const output = container.logs();
      expect(output).not.toContain(stack.sandbox.clients[0]!.clientSecret);
      for (const token of tokens) expect(output).not.toContain(token);
    });

    it('end each invocation with one EMF line: namespace LimitrailTokenBroker, dimension FunctionName, ColdStart on the first', () => {
      const emf = lines.filter((l) => l._aws);
      expect(emf).toHaveLength(3);
      for (const line of emf) {
        expect(line._aws).toMatchObject({
          CloudWatchMetrics: [{ Namespace: METRICS_NAMESPACE, Dimensions: [['FunctionName']] }],
        });
        expect(line.FunctionName).toBe(FUNCTION_NAME);
        expect(line).not.toHaveProperty('service');
      }
      expect(emf.map((l) => l.ColdStart)).toEqual([1, undefined, undefined]);
      expect(emf.map((l) => [l.EndpointFetches, l.MemoryHits, l.Refusals])).toEqual([
        [1, undefined, undefined],
        [undefined, 1, undefined],
        [undefined, undefined, 1],
      ]);
    });
  },
);
