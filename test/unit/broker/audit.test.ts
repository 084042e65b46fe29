import { afterAll, describe, expect, it } from 'vitest';
import { auditRefused, MAX_REFUSAL_FIELDS_BYTES } from '../../../functions/lib/broker/audit';
import { AccessDeniedError, InvalidRequestError, toOAuthError } from '../../../functions/lib/shared/errors';
import { createPowertoolsLogger, Logger, lambdaContextFields } from '../../../functions/lib/shared/logger';
import { captureLogLines, stopCapturing } from '../../support/log-capture';

/**
 * Refusal lines written through the real Powertools logger, with a Lambda context as large as AWS gives one: whatever
 * a caller put into the event, the line stays under 4 KB with its decision first.
 */
const lines = captureLogLines([]);
afterAll(() => stopCapturing(lines));

const logger = () =>
  new Logger(createPowertoolsLogger({}))
    .child(
      lambdaContextFields(
        {
          awsRequestId: '8f5a3c2e-0000-4000-8000-000000000000',
          functionName: 'limitrail-token-broker-production-token',
          invokedFunctionArn:
            'arn:aws:lambda:eu-central-1:123456789012:function:limitrail-token-broker-production-token:live',
          memoryLimitInMB: '1024',
        },
        true,
      ),
    )
    .child({ requestId: '8f5a3c2e-0000-4000-8000-000000000000' });
const lastLine = () => lines.at(-1)!;
const OWN_KEYS_AFTER = 'sampling_rate'; // Powertools' last key; the broker's fields follow it

describe('refusal lines', () => {
  it('put the decision fields first and keep every field of an ordinary refusal', () => {
    const err = new AccessDeniedError('caller "arn:aws:iam::123456789012:user/ci" has no grant', 'caller_not_granted');
    auditRefused(logger(), {
      who: { caller: 'arn:aws:iam::123456789012:user/ci', identity: 'verified' },
      asked: { client: 'limitrail', scopes: ['limitrail.usage.read'] },
      body: toOAuthError(err),
      err,
    });
    const keys = Object.keys(JSON.parse(lastLine()) as object);
    const own = keys.slice(keys.indexOf(OWN_KEYS_AFTER) + 1);
    expect(own).toEqual([
      'audit',
      'error',
      'status',
      'reason',
      'caller',
      'identity',
      'client',
      'scopes',
      'detail',
      'requestId',
    ]);
  });

  it('stay under 4 KB with the decision intact whatever the fields hold, saying what was left out', () => {
    const err = new InvalidRequestError(`x${'d'.repeat(8_000)}`);
    auditRefused(logger(), {
      who: { caller: `arn:aws:iam::123456789012:user/${'u'.repeat(200_000)}`, urlCaller: 'u'.repeat(5_000) },
      asked: { client: 'limitrail', scopes: Array.from({ length: 32 }, (_, i) => `${i}${'s'.repeat(255)}`) },
      body: toOAuthError(err),
      err,
    });
    const line = lastLine();
    expect(Buffer.byteLength(line)).toBeLessThan(4_096);
    const parsed = JSON.parse(line) as Record<string, unknown>;
    const keys = Object.keys(parsed);
    expect(keys.slice(keys.indexOf(OWN_KEYS_AFTER) + 1, keys.indexOf(OWN_KEYS_AFTER) + 5)).toEqual([
      'audit',
      'error',
      'status',
      'reason',
    ]);
    expect(parsed).toMatchObject({
      audit: 'refused',
      error: 'invalid_request',
      status: 400,
      reason: 'invalid_request',
    });
    expect(String(parsed.caller)).toContain('… (200031 characters)');
    expect(parsed.omitted).toEqual(expect.arrayContaining(['detail']));
    const { level, message, timestamp, service, cold_start, sampling_rate, ...own } = parsed;
    void [level, message, timestamp, service, cold_start, sampling_rate];
    expect(Buffer.byteLength(JSON.stringify(own))).toBeLessThanOrEqual(MAX_REFUSAL_FIELDS_BYTES + 100);
  });

  it('shorten a long list to what fits, saying how many entries were left out', () => {
    const err = new AccessDeniedError('no grant', 'caller_not_granted');
    auditRefused(logger(), {
      who: { caller: 'unproven' },
      asked: { client: 'limitrail', scopes: Array.from({ length: 32 }, (_, i) => `scope-${i}-${'s'.repeat(100)}`) },
      body: toOAuthError(err),
      err,
    });
    const scopes = (JSON.parse(lastLine()) as { scopes: string[] }).scopes;
    expect(scopes.length).toBeLessThan(32);
    expect(scopes.at(-1)).toBe(`… (${32 - (scopes.length - 1)} more)`);
    expect(scopes[0]).toBe(`scope-0-${'s'.repeat(100)}`);
  });
});
