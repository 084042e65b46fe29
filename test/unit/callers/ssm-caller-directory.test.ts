import { describe, expect, it } from 'vitest';
import {
  COLD_RETRY_MS,
  type ParameterReader,
  SsmCallerDirectory,
} from '../../../functions/lib/callers/ssm-caller-directory';
import type { Log, MetricsSink } from '../../../functions/lib/ports';
import type { BrokerError } from '../../../functions/lib/shared/errors';
import type { MetricName } from '../../../functions/lib/shared/metrics';

/**
 * The decisions of SsmCallerDirectory around the parameter's reads: last known good, backing off, logging once. The
 * reader is a script here (Powertools' cache and SSM itself: test/integration/callers-parameter.test.ts).
 */
const NAME = '/broker/test/callers';
const MAX_AGE_SEC = 60;
const ROLE = 'arn:aws:iam::111111111111:role/billing';
const valid = (scopes = ['a']) => JSON.stringify({ callers: [{ principal: ROLE, client: 'limitrail', scopes }] });
const sdkError = (name: string, httpStatusCode?: number) =>
  Object.assign(new Error('GetParameter failed'), {
    name: 'GetParameterError',
    cause: Object.assign(new Error(`${name}: with a message that may quote the request`), {
      name,
      $metadata: httpStatusCode === undefined ? {} : { httpStatusCode },
    }),
  });

const world = () => {
  let nowMs = 1_000_000;
  const answers: Array<string | Error> = [];
  let reads = 0;
  const reader: ParameterReader = {
    get: async (name, options) => {
      expect([name, options]).toEqual([NAME, { maxAge: MAX_AGE_SEC }]);
      reads += 1;
      const next = answers.length > 1 ? answers.shift()! : answers[0]!;
      if (next instanceof Error) throw next;
      return next;
    },
  };
  const lines: { level: string; message: string; fields?: Record<string, unknown> }[] = [];
  const log: Log = {
    child: () => log,
    debug: (message, fields) => lines.push({ level: 'debug', message, fields }),
    info: (message, fields) => lines.push({ level: 'info', message, fields }),
    warn: (message, fields) => lines.push({ level: 'warn', message, fields }),
    error: (message, fields) => lines.push({ level: 'error', message, fields }),
  };
  const counts = new Map<MetricName, number>();
  const metrics: MetricsSink = {
    count: (name, n = 1) => void counts.set(name, (counts.get(name) ?? 0) + n),
    record: () => undefined,
  };
  const directory = new SsmCallerDirectory(reader, {
    parameter: { name: NAME, maxAgeSec: MAX_AGE_SEC },
    clientScopes: new Map([['limitrail', new Set(['a', 'b'])]]),
    grantOptions: { organizations: false },
    clock: { nowMs: () => nowMs },
  });
  const refusal = async () => {
    try {
      await directory.current(log, metrics);
    } catch (err) {
      return err as BrokerError;
    }
    throw new Error('expected a refusal');
  };
  return {
    directory,
    /** The next reads answer these, the last one for good. */
    answer: (...next: Array<string | Error>) => answers.splice(0, answers.length, ...next),
    reads: () => reads,
    advance: (ms: number) => {
      nowMs += ms;
    },
    current: () => directory.current(log, metrics),
    refusal,
    lines,
    count: (name: MetricName) => counts.get(name) ?? 0,
  };
};

describe('a cold container (no valid value read yet)', () => {
  it('answers 503 callers_unavailable while SSM is unavailable, reading again only after a second', async () => {
    const w = world();
    w.answer(sdkError('TimeoutError'));
    const first = await w.refusal();
    expect(first.toOAuth()).toEqual({
      error: 'temporarily_unavailable',
      status: 503,
      error_description:
        'the list of callers cannot be read now (SSM Parameter Store is unavailable); try again shortly',
      retryAfterSeconds: 1,
    });
    expect((await w.refusal()).reason).toBe('callers_unavailable');
    expect(w.reads()).toBe(1);
    w.advance(COLD_RETRY_MS);
    w.answer(sdkError('ThrottlingException', 400));
    expect((await w.refusal()).reason).toBe('callers_unavailable');
    expect(w.reads()).toBe(2);
    expect(w.lines.map((l) => [l.level, l.message, l.fields?.error, l.fields?.keeping])).toEqual([
      ['error', 'callers parameter unreadable', 'TimeoutError', 'nothing: every caller is refused'],
      ['error', 'callers parameter unreadable', 'ThrottlingException (HTTP 400)', 'nothing: every caller is refused'],
    ]);
    expect(JSON.stringify(w.lines)).not.toContain('may quote the request');
  });

  it('answers 500 misconfigured when the parameter is missing or forbidden', async () => {
    for (const [name, status] of [
      ['ParameterNotFound', 400],
      ['AccessDeniedException', 400],
    ] as const) {
      const w = world();
      w.answer(sdkError(name, status));
      const refusal = await w.refusal();
      expect(refusal.reason).toBe('config_invalid');
      expect(refusal.toOAuth()).toMatchObject({ error: 'server_error', status: 500 });
      expect(w.lines[0]).toMatchObject({ level: 'error', fields: { parameter: NAME, error: `${name} (HTTP 400)` } });
    }
  });

  it('answers 500 misconfigured for an invalid value, logging the problem once per value and counting each request', async () => {
    const w = world();
    w.answer(JSON.stringify({ callers: [{ principal: ROLE, client: 'limitrail', scopes: ['z'] }] }));
    for (let i = 0; i < 3; i += 1) {
      const refusal = await w.refusal();
      expect(refusal.toOAuth()).toEqual({
        error: 'server_error',
        status: 500,
        error_description:
          'the broker is misconfigured (its callers parameter cannot be used); the platform team can find the cause in its logs',
      });
    }
    expect(w.count('CallersParameterInvalid')).toBe(3);
    expect(w.lines).toEqual([
      {
        level: 'error',
        message: 'callers parameter invalid',
        fields: {
          parameter: NAME,
          reason: 'config_invalid',
          problem: `invalid configuration: the callers parameter ${NAME}: callers[0].scopes[0] must be one of the client's scopes`,
          keeping: 'nothing: every caller is refused',
        },
      },
    ]);
  });
});

describe('a warm container (a valid value read)', () => {
  it('answers from the value read, parsing an unchanged value once', async () => {
    const w = world();
    w.answer(valid());
    const first = await w.current();
    expect(first.grants.map((g) => [g.principalText, [...g.scopes]])).toEqual([[ROLE, ['a']]]);
    expect(await w.current()).toBe(first);
    w.answer(valid(['a', 'b']));
    expect([...(await w.current()).grants[0]!.scopes]).toEqual(['a', 'b']);
    expect(w.lines).toEqual([]);
    expect(w.count('CallersStale')).toBe(0);
  });

  it('keeps the last valid value when the value turns invalid, counting it, and takes the next valid one', async () => {
    const w = world();
    w.answer(valid());
    const good = await w.current();
    w.answer('{"callers": "not a list"}');
    expect(await w.current()).toBe(good);
    expect(await w.current()).toBe(good);
    expect(w.count('CallersParameterInvalid')).toBe(2);
    expect(w.count('CallersStale')).toBe(2);
    w.answer(valid(['b']));
    expect([...(await w.current()).grants[0]!.scopes]).toEqual(['b']);
    await w.current(); // the recovery is logged once, not on every request after it
    expect(w.lines.map((l) => [l.level, l.message, l.fields?.keeping])).toEqual([
      ['error', 'callers parameter invalid', 'the last valid value'],
      ['info', 'callers parameter valid again', undefined],
    ]);
  });

  it('keeps the last valid value while SSM fails, reading it again only once per max age', async () => {
    const w = world();
    w.answer(valid());
    const good = await w.current();
    w.answer(sdkError('InternalServerError', 500), valid(['b']));
    expect(await w.current()).toBe(good);
    expect(w.reads()).toBe(2);
    w.advance(MAX_AGE_SEC * 1000 - 1);
    expect(await w.current()).toBe(good);
    expect(w.reads()).toBe(2);
    expect(w.count('CallersStale')).toBe(2);
    w.advance(1);
    expect([...(await w.current()).grants[0]!.scopes]).toEqual(['b']);
    expect(w.reads()).toBe(3);
    expect(w.lines.map((l) => [l.level, l.message, l.fields?.keeping ?? l.fields?.parameter])).toEqual([
      ['warn', 'callers parameter unreadable', 'the last valid value'],
      ['info', 'callers parameter valid again', NAME],
    ]);
  });

  it('keeps the last valid value when the parameter is deleted', async () => {
    const w = world();
    w.answer(valid());
    const good = await w.current();
    w.answer(sdkError('ParameterNotFound', 400));
    expect(await w.current()).toBe(good);
    expect(w.lines[0]).toMatchObject({ level: 'warn', fields: { reason: 'config_invalid' } });
  });
});
