/**
 * `osls package` and `osls deploy` refuse a stage the broker would refuse at start-up, and say which stage parameter
 * to fix (the plugin infra/config-check-plugin.cjs, running infra/config-check.ts and with it the broker's own
 * configuration loader). Each refusal is the ci stage of serverless.yml with one setting changed on the command line
 * (`--param`), so each run proves that setting alone fails it; every case of the checks without osls is in
 * test/infra/config-check.test.ts. Offline: every AWS endpoint is a closed loopback port
 * (test/support/stacks/packaged-stack.ts).
 */
import { describe, expect, it } from 'vitest';

import { type OslsRun, packageStage, runOsls, tryPackageStage } from '../support/stacks/packaged-stack';

const REQUIRED = {
  limitrailTokenUrl: 'https://auth.limitrail.example/connect/token',
  limitrailClientId: 'lr_00000000000000000000000000000000',
};
const BILLING = 'arn:aws:iam::111111111111:role/billing-service';

/** The run failed, before anything was packaged, with the plugin's message naming each of `problems`. */
const expectRefused = (run: OslsRun, stage: string, ...problems: string[]) => {
  expect(run.code, run.output).not.toBe(0);
  expect(run.output).not.toContain('Service packaged');
  expect(run.output).toContain(`stage "${stage}" is refused: its configuration would not work as deployed`);
  for (const problem of problems) expect(run.output).toContain(`  - ${problem}`);
};

describe('osls package refuses a stage the broker would refuse, naming the stage parameter', () => {
  it('an http:// token URL: limitrailTokenUrl', async () => {
    const run = await tryPackageStage('ci', { limitrailTokenUrl: 'http://auth.limitrail.example/connect/token' });
    expectRefused(run, 'ci', 'stage parameter limitrailTokenUrl: BROKER_CLIENTS.limitrail.tokenUrl must be https');
  });

  it('a grant naming a scope the client does not have: brokerCallers, with the scope', async () => {
    const run = await tryPackageStage('ci', {
      brokerCallers: JSON.stringify([{ principal: BILLING, client: 'limitrail', scopes: ['limitrail.usage.wrte'] }]),
      invokePrincipals: JSON.stringify([BILLING]),
    });
    expectRefused(
      run,
      'ci',
      `stage parameter brokerCallers: BROKER_CALLERS[0].scopes[0] must be one of the client's scopes ("limitrail.usage.wrte"; client "limitrail" has limitrail.usage.read, limitrail.usage.write, limitrail.accounts.read, limitrail.runtime.read)`,
    );
  });

  it('an invokePrincipals account no grant covers: invokePrincipals, saying to name roles', async () => {
    const run = await tryPackageStage('ci', { invokePrincipals: JSON.stringify([BILLING, '222222222222']) });
    expectRefused(run, 'ci', 'stage parameter invokePrincipals: "222222222222" is not covered by any grant');
    expect(run.output).toContain('name the roles that have grants rather than a whole account');
    expect(run.output).not.toContain(BILLING);
  });

  it('a stage named like production without tokenKeyAdminRoleArn (and a warning for its empty caller list)', async () => {
    const run = await tryPackageStage('live', REQUIRED);
    expectRefused(run, 'live', 'stage "live" looks like production and does not set tokenKeyAdminRoleArn');
    expect(run.output).toContain(
      'Warning: stage parameter brokerCallers grants nobody: with callerAuth "grants" every call is refused',
    );
  });

  it('required stage parameters missing: one message naming each, not an unresolved variable', async () => {
    const run = await tryPackageStage('staging');
    expect(run.code, run.output).not.toBe(0);
    expect(run.output).toContain(
      [
        'stage "staging" does not set these 2 required stage parameters:',
        '  - limitrailTokenUrl (the LimitRail token endpoint, https://...)',
        '  - limitrailClientId (the public lr_... client id)',
      ].join('\n'),
    );
    expect(run.output).not.toContain('Cannot resolve variable');
  });
});

describe('osls deploy', () => {
  it('runs the same checks before it packages or calls AWS', async () => {
    const run = await runOsls(['deploy', '--stage', 'ci'], {
      limitrailTokenUrl: 'http://auth.limitrail.example/connect/token',
    });
    expectRefused(run, 'ci', 'stage parameter limitrailTokenUrl: BROKER_CLIENTS.limitrail.tokenUrl must be https');
  });
});

describe('a stage that packages with warnings', () => {
  it('warns for organization grants and a missing tokenKeyAdminRoleArn; reserves no concurrency by default', async () => {
    const packaged = await packageStage('staging', {
      ...REQUIRED,
      callerAuth: 'invoke-permission',
      brokerCallers: JSON.stringify([
        { principal: 'o-a1b2c3d4e5', client: 'limitrail', scopes: ['limitrail.accounts.read'] },
      ]),
    });
    try {
      expect(packaged.output).toContain(
        'Warning: stage parameter brokerCallers grants organization "o-a1b2c3d4e5": every principal of it may call the Function URL',
      );
      expect(packaged.output).toContain('Warning: stage parameter tokenKeyAdminRoleArn is not set');
      // tokenReservedConcurrency unset: no reservation (the ci stage sets one: package.test.ts).
      const token = packaged.template.Resources.TokenLambdaFunction!;
      expect(token.Properties).not.toHaveProperty('ReservedConcurrentExecutions');
    } finally {
      await packaged.remove();
    }
  });
});
