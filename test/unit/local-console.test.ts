import { describe, expect, it } from 'vitest';
import { consoleLine, isMetricsLine, shortCaller } from '../../local/console';
import { oslsFailure } from '../support/stacks/offline';

/**
 * What `npm start` shows of the functions' output (local/console.ts), on lines as the broker really prints them
 * (copied from a run), and what it shows of an osls failure (test/support/stacks/offline.ts).
 */
const AT = '2026-12-03T13:35:53.323Z';
const HHMMSS = new Date(AT).toTimeString().slice(0, 8);
const context = {
  service: 'limitrail-token-broker',
  function_arn: 'offline_invokedFunctionArn_for_limitrail-token-broker-local-token',
  function_memory_size: '256',
  function_name: 'limitrail-token-broker-local-token',
  function_request_id: 'a7f49025-b343-4863-a448-20e37dabd5b1',
  sampling_rate: 0,
  requestId: 'a7f49025-b343-4863-a448-20e37dabd5b1',
};
const issued = JSON.stringify({
  level: 'INFO',
  message: 'token served',
  timestamp: AT,
  cold_start: true,
  ...context,
  audit: 'issued',
  caller: 'arn:aws:sts::123456789012:assumed-role/limitrail-demo-caller/npm-start',
  identity: 'verified',
  client: 'limitrail',
  scopes: ['limitrail.usage.read', 'limitrail.usage.write'],
  cacheKey: 'v1:98ae8cd93437',
  source: 'endpoint',
  tokenFingerprint: '341004585b92',
  expiresAtEpochSec: 1796308553,
});
const refused = JSON.stringify({
  level: 'WARN',
  message: 'token request refused',
  timestamp: AT,
  cold_start: false,
  ...context,
  audit: 'refused',
  caller: 'arn:aws:sts::123456789012:assumed-role/limitrail-demo-nogrant/npm-run-token',
  identity: 'verified',
  error: 'access_denied',
  status: 403,
  reason: 'caller_not_granted',
  detail: 'caller "arn:aws:sts::123456789012:assumed-role/limitrail-demo-nogrant/npm-run-token" has no grant',
});
const emf =
  '{"_aws":{"Timestamp":1796304953369,"CloudWatchMetrics":[{"Namespace":"LimitrailTokenBroker","Dimensions":[["FunctionName"]],"Metrics":[{"Name":"Misses","Unit":"Count"}]}]},"FunctionName":"limitrail-token-broker-local-token","Misses":1}';
const fetched = JSON.stringify({
  level: 'INFO',
  message: 'token fetched from the token endpoint',
  timestamp: AT,
  ...context,
  latencyMs: 65,
});
const duration =
  '(λ: token) RequestId: a7f49025-b343-4863-a448-20e37dabd5b1  Duration: 612.58 ms  Billed Duration: 613 ms';

describe('npm start console (readable)', () => {
  const readable = (line: string) => consoleLine(line, { json: false });

  it('shows a token handed out as one line: time, caller, client, scopes, source, status, and a cold start', () => {
    expect(readable(issued)).toBe(
      `${HHMMSS}  limitrail-demo-caller/npm-start  limitrail  limitrail.usage.read limitrail.usage.write  endpoint  200 (cold start)`,
    );
    expect(readable(issued.replace('"cold_start":true', '"cold_start":false'))).not.toContain('cold start');
  });

  it('shows a refusal as one line with its status, error, reason and description', () => {
    expect(readable(refused)).toBe(
      `${HHMMSS}  limitrail-demo-nogrant/npm-run-token  -  -  -  403 access_denied (caller_not_granted): caller "arn:aws:sts::123456789012:assumed-role/limitrail-demo-nogrant/npm-run-token" has no grant`,
    );
  });

  it('leaves out the metrics line, the other details and the per-invocation duration line, and keeps other text', () => {
    expect(isMetricsLine(emf)).toBe(true);
    expect(isMetricsLine(issued)).toBe(false);
    expect(readable(emf)).toBeUndefined();
    expect(readable(fetched)).toBeUndefined();
    expect(readable(duration)).toBeUndefined();
    expect(readable('   ')).toBeUndefined();
    expect(readable('Scheduling [prewarm] cron: [*/5 * * * *]')).toBe('Scheduling [prewarm] cron: [*/5 * * * *]');
    expect(readable('{not json')).toBe('{not json');
  });

  it('shows a warning or error that is no audit line, with its reason (a misconfigured broker says why)', () => {
    const invalid = JSON.stringify({
      level: 'ERROR',
      message: 'broker configuration invalid',
      timestamp: AT,
      ...context,
      reason: 'config_invalid',
      detail: 'invalid configuration: BROKER_CALLERS[0].principal is an organization',
    });
    expect(readable(invalid)).toBe(
      `${HHMMSS}  ERROR  broker configuration invalid (config_invalid: invalid configuration: BROKER_CALLERS[0].principal is an organization)`,
    );
  });

  it("sums up a prewarm run by its counts, without Powertools' context", () => {
    const prewarm = JSON.stringify({
      level: 'INFO',
      message: 'prewarm run',
      timestamp: AT,
      cold_start: true,
      ...context,
      refreshed: 1,
      fresh: 0,
      inProgress: 0,
      failed: 0,
      skipped: 0,
      results: [],
    });
    expect(readable(prewarm)).toBe(`${HHMMSS}  prewarm  refreshed=1 fresh=0 inProgress=0 failed=0 skipped=0`);
  });

  it('shows every line as it came with --json (the metrics line too)', () => {
    for (const line of [issued, refused, emf, fetched, duration]) expect(consoleLine(line, { json: true })).toBe(line);
  });

  it('names a caller by role and session, or user, without the account', () => {
    expect(shortCaller('arn:aws:sts::123456789012:assumed-role/billing/i-0abc')).toBe('billing/i-0abc');
    expect(shortCaller('arn:aws:iam::123456789012:user/ci')).toBe('user/ci');
    expect(shortCaller('direct invoke')).toBe('direct invoke');
    expect(shortCaller(undefined)).toBe('-');
  });
});

describe('an osls failure at start', () => {
  it('keeps the message and drops the banner and the stack trace', () => {
    // What osls 4.3.1 printed for an organization grant in grants mode (paths shortened).
    const output = [
      'Environment: linux, node 20.20.2, osls 4.3.1 (local)',
      'Docs:        github.com/oss-serverless/osls',
      '',
      'Error:',
      'Cannot resolve serverless.yml: Variables resolution errored with:',
      '  - Cannot resolve variable at "resources.3": Cannot resolve "caller-access.cjs": Returned JS function errored with: Error: brokerCallers principal "o-abcdefghij" is an organization id, which callerAuth "grants" refuses (an identity proof names an account and a principal, never an organization): grant the account ids instead',
      '    at module.exports (/repo/infra/caller-access.cjs:63:15)',
      '    at async /repo/node_modules/osls/lib/configuration/variables/sources/file.js:113:22',
      '    at async Promise.all (index 0)',
      '    at async /repo/node_modules/osls/scripts/serverless.js:520:7',
      '',
    ].join('\n');
    const shown = oslsFailure(output);
    expect(shown).toMatch(/^Error:\nCannot resolve serverless.yml/);
    expect(shown).toContain('is an organization id, which callerAuth "grants" refuses');
    expect(shown).not.toMatch(/\n\s+at /);
    expect(shown).not.toContain('Environment:');
    expect(shown.split('\n')).toHaveLength(3);
  });
});
