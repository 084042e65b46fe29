import { afterAll, describe, expect, it } from 'vitest';
import { auditRefused, MAX_REFUSAL_FIELD_CHARS, MAX_REFUSAL_FIELDS_BYTES } from '../../../functions/lib/broker/audit';
import {
  AccessDeniedError,
  ConfigurationError,
  InvalidRequestError,
  toOAuthError,
  UnavailableError,
} from '../../../functions/lib/shared/errors';
import { createPowertoolsLogger, type Log, Logger, lambdaContextFields } from '../../../functions/lib/shared/logger';
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

/** A log that keeps each line's level, message and fields. */
const recording = () => {
  const lines: { level: string; message: string; fields: Record<string, unknown> }[] = [];
  const at =
    (level: string) =>
    (message: string, fields?: Record<string, unknown>): void => {
      lines.push({ level, message, fields: fields ?? {} });
    };
  const log: Log = { child: () => log, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  return { log, lines, last: () => lines.at(-1)! };
};
const jsonBytes = (value: unknown) => Buffer.byteLength(JSON.stringify(value));
const refuse = (log: Log, err: unknown, who: Record<string, string> = { caller: 'unproven' }, scopes?: string[]) =>
  auditRefused(log, {
    who: who as { caller: string },
    ...(scopes ? { asked: { client: 'limitrail', scopes } } : {}),
    body: toOAuthError(err),
    err,
  });

describe('the level and message of a refusal line', () => {
  it.each([
    { err: new AccessDeniedError('no grant', 'caller_not_granted'), status: 403, level: 'warn' },
    { err: new ConfigurationError('invalid configuration: x', 'config_invalid'), status: 500, level: 'error' },
    { err: new TypeError('a bug'), status: 500, level: 'error' },
    { err: new UnavailableError('the token endpoint failed', 'upstream_unavailable'), status: 503, level: 'error' },
  ])('is $level for a $status', ({ err, status, level }) => {
    const r = recording();
    refuse(r.log, err);
    expect(r.last()).toMatchObject({ level, message: 'token request refused', fields: { audit: 'refused', status } });
  });
});

describe('the fields of a refusal line', () => {
  it('keep an ordinary refusal as it is: the scopes asked, the caller, the detail', () => {
    const r = recording();
    refuse(r.log, new AccessDeniedError('no grant', 'caller_not_granted'), { caller: 'arn:aws:iam::1:user/ci' }, [
      'a',
      'b',
    ]);
    expect(r.last().fields).toEqual({
      audit: 'refused',
      error: 'access_denied',
      status: 403,
      reason: 'caller_not_granted',
      caller: 'arn:aws:iam::1:user/ci',
      client: 'limitrail',
      scopes: ['a', 'b'],
      detail: 'no grant',
    });
  });

  it('describe an error that is not a refusal (a bug) by the answer and the error name, unless told not to', () => {
    const r = recording();
    refuse(r.log, new TypeError('x is undefined: secret'));
    expect(r.last().fields).toMatchObject({
      error: 'server_error',
      status: 500,
      reason: 'unexpected',
      detail: 'internal error in the token broker',
      errorName: 'TypeError',
    });
    const err = new TypeError('x is undefined: secret');
    auditRefused(r.log, { who: { caller: 'unproven' }, body: toOAuthError(err), err, describeUnexpected: false });
    expect(r.last().fields).toMatchObject({ reason: 'unexpected', detail: 'TypeError' });
    expect(r.last().fields).not.toHaveProperty('errorName');
  });

  it('keep a text of exactly MAX_REFUSAL_FIELD_CHARS characters, and cut one longer', () => {
    const r = recording();
    const err = new AccessDeniedError('no grant', 'caller_not_granted');
    const exact = 'c'.repeat(MAX_REFUSAL_FIELD_CHARS);
    refuse(r.log, err, { caller: exact });
    expect(r.last().fields.caller).toBe(exact);
    refuse(r.log, err, { caller: `${exact}c` });
    expect(r.last().fields.caller).toBe(`${exact}… (${MAX_REFUSAL_FIELD_CHARS + 1} characters)`);
  });

  it('keep a list of exactly MAX_REFUSAL_FIELD_CHARS bytes of JSON', () => {
    const r = recording();
    const scopes = ['s'.repeat(MAX_REFUSAL_FIELD_CHARS - 4)];
    expect(jsonBytes(scopes)).toBe(MAX_REFUSAL_FIELD_CHARS);
    refuse(r.log, new AccessDeniedError('no grant', 'caller_not_granted'), undefined, scopes);
    expect(r.last().fields.scopes).toEqual(scopes);
  });

  it('shorten a longer list to the entries that fit with the note, the first one fitting exactly', () => {
    const r = recording();
    const note = '… (999 more)';
    const first = 's'.repeat(MAX_REFUSAL_FIELD_CHARS - jsonBytes(['', note]));
    expect(jsonBytes([first, note])).toBe(MAX_REFUSAL_FIELD_CHARS);
    refuse(r.log, new AccessDeniedError('no grant', 'caller_not_granted'), undefined, [first, 't'.repeat(20)]);
    expect(r.last().fields.scopes).toEqual([first, '… (1 more)']);
  });

  it('shorten a list, note included, to at most MAX_REFUSAL_FIELD_CHARS bytes of JSON', () => {
    const r = recording();
    for (const length of [1_000, 1_005, 1_010, 1_015, 1_020]) {
      refuse(r.log, new AccessDeniedError('no grant', 'caller_not_granted'), undefined, [
        's'.repeat(length),
        't'.repeat(20),
      ]);
      expect(jsonBytes(r.last().fields.scopes)).toBeLessThanOrEqual(MAX_REFUSAL_FIELD_CHARS);
    }
  });

  it('keep a field that fills the room left exactly, and leave out one a byte longer', () => {
    const r = recording();
    const who = { caller: 'c'.repeat(1_000), urlCaller: 'u'.repeat(1_000) };
    const err = (detail: string) => new InvalidRequestError(detail);
    const decision = { audit: 'refused', error: 'invalid_request', status: 400, reason: 'invalid_request' };
    const room =
      MAX_REFUSAL_FIELDS_BYTES -
      jsonBytes(decision) -
      160 -
      jsonBytes({ caller: who.caller }) -
      jsonBytes({ urlCaller: who.urlCaller });
    const fits = 'd'.repeat(room - jsonBytes({ detail: '' }));
    expect(fits.length).toBeLessThan(MAX_REFUSAL_FIELD_CHARS);
    refuse(r.log, err(fits), who);
    expect(r.last().fields).toMatchObject({ ...decision, detail: fits });
    expect(r.last().fields).not.toHaveProperty('omitted');
    refuse(r.log, err(`${fits}d`), who);
    expect(r.last().fields).toMatchObject({ ...decision, omitted: ['detail'] });
    expect(r.last().fields).not.toHaveProperty('detail');
  });
});
