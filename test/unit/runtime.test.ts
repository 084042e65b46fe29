import { SSMClient } from '@aws-sdk/client-ssm';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createRuntime } from '../../functions/lib/runtime';
import { ConfigurationError } from '../../functions/lib/shared/errors';
import { silentLog } from '../support/fakes/silent-log';
import { captureLogLines, stopCapturing } from '../support/log-capture';

/**
 * The composition root's own decisions, without AWS: which SSM client reads the callers parameter and with which
 * grant rules, the EMF dimension, the warning an invoke-permission container starts with. The rest of its wiring
 * (DynamoDB, KMS, Secrets Manager, STS) is exercised against moto by test/integration.
 */
const BASE = {
  TOKEN_TABLE_NAME: 'tokens',
  TOKEN_KMS_KEY_ID: 'alias/broker',
  BROKER_CLIENTS: JSON.stringify({
    limitrail: { secretId: 's', tokenUrl: 'https://auth.example.com/connect/token', scopes: ['a', 'b'] },
  }),
};
const GRANTS = {
  ...BASE,
  CALLER_PROOF_AUDIENCE: 'broker',
  BROKER_CALLERS: JSON.stringify([
    { principal: 'arn:aws:iam::111111111111:role/billing', client: 'limitrail', scopes: ['a'] },
  ]),
};
const PARAMETER = '/limitrail-token-broker/ci/callers';

let lines: string[] = [];
beforeEach(() => {
  lines = captureLogLines([]);
  // A client the runtime would make by itself reaches nothing: a closed port on this host.
  vi.stubEnv('AWS_REGION', 'eu-central-1');
  vi.stubEnv('AWS_ENDPOINT_URL_SSM', 'http://127.0.0.1:9');
});
afterEach(() => {
  stopCapturing(lines);
  vi.unstubAllEnvs();
});
const parsed = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);

/** An SSM client that answers every GetParameter with `value` (in memory), and the names it was asked for. */
const parameterStore = (value: string) => {
  const ssm = new SSMClient({ region: 'eu-central-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  const asked: string[] = [];
  ssm.middlewareStack.add(
    () => async (args) => {
      const { Name } = args.input as { Name: string };
      asked.push(Name);
      return { output: { Parameter: { Name, Type: 'String', Value: value }, $metadata: {} }, response: {} };
    },
    { step: 'initialize', name: 'inMemoryParameterStore' },
  );
  return { ssm, asked };
};

const withParameter = (env: Record<string, string>) => {
  const { BROKER_CALLERS: _, ...rest } = env;
  return { ...rest, BROKER_CALLERS_PARAMETER: PARAMETER };
};

describe('the callers parameter, as the runtime reads it', () => {
  it('is read through the SSM client given', async () => {
    const { ssm, asked } = parameterStore(
      JSON.stringify({
        callers: [{ principal: 'arn:aws:iam::111111111111:role/billing', client: 'limitrail', scopes: ['a'] }],
      }),
    );
    const runtime = createRuntime(withParameter(GRANTS), { ssm });
    const list = await runtime.callerDirectory.current(silentLog);
    expect(asked).toEqual([PARAMETER]);
    expect(list.grants).toEqual([
      expect.objectContaining({ client: 'limitrail', principal: expect.objectContaining({ kind: 'role' }) }),
    ]);
  });

  const organizationGrant = JSON.stringify({
    callers: [{ principal: 'o-a1b2c3d4e5', client: 'limitrail', scopes: ['a'] }],
  });

  it('refuses an organization grant in grants mode (an identity proof names no organization)', async () => {
    const { ssm } = parameterStore(organizationGrant);
    const runtime = createRuntime(withParameter(GRANTS), { ssm });
    const err = await runtime.callerDirectory.current(silentLog).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigurationError);
    expect(err).toMatchObject({ reason: 'config_invalid' });
  });

  it('takes an organization grant in invoke-permission mode', async () => {
    const { ssm } = parameterStore(organizationGrant);
    const runtime = createRuntime(withParameter({ ...BASE, CALLER_AUTH: 'invoke-permission' }), { ssm });
    const list = await runtime.callerDirectory.current(silentLog);
    expect(list.grants).toEqual([
      expect.objectContaining({ client: 'limitrail', principal: { kind: 'organization', orgId: 'o-a1b2c3d4e5' } }),
    ]);
  });
});

describe('the runtime', () => {
  const emfLineOf = (env: Record<string, string>) => {
    const { metrics } = createRuntime(env).telemetry.begin({ awsRequestId: 'r-1' });
    metrics.count('Refusals');
    metrics.flush(Date.parse('2026-11-29T08:00:00Z'));
    return parsed().find((l) => '_aws' in l);
  };

  it("writes its metrics under the function's name (AWS_LAMBDA_FUNCTION_NAME), the dimension the alarms select on", () => {
    expect(emfLineOf({ ...GRANTS, AWS_LAMBDA_FUNCTION_NAME: 'limitrail-token-broker-ci-token' })).toMatchObject({
      FunctionName: 'limitrail-token-broker-ci-token',
      Refusals: 1,
    });
  });

  it('writes its metrics under "local" outside Lambda', () => {
    expect(emfLineOf(GRANTS)).toMatchObject({ FunctionName: 'local', Refusals: 1 });
  });

  const startWarnings = () =>
    parsed().filter((l) => typeof l.message === 'string' && l.message.startsWith('CALLER_AUTH=invoke-permission'));

  it('warns at start that with CALLER_AUTH=invoke-permission a direct invoke without a proof may get every scope', () => {
    createRuntime({ ...BASE, CALLER_AUTH: 'invoke-permission' });
    expect(startWarnings()).toEqual([expect.objectContaining({ level: 'WARN', callerAuth: 'invoke-permission' })]);
  });

  it('starts without that warning in grants mode', () => {
    createRuntime(GRANTS);
    expect(startWarnings()).toEqual([]);
  });
});
