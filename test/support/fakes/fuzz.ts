/**
 * Helpers for the property tests of untrusted input (test/unit/*.fuzz.test.ts), in the manner of middy's
 * index.fuzz.js: random input must end in a result or a typed error, never in another exception.
 *
 * Runs use a fixed seed, so a failure reproduces on the next run and in CI; FUZZ_SEED=<integer> explores other
 * inputs (FUZZ_SEED=random: a new seed each run). fast-check names the seed and the shrunk counterexample of any
 * failure.
 */

import type { IdentityProof } from '@limitrail/token-broker-client';
import fc from 'fast-check';
import { isRecord } from '../../../functions/lib/shared/assert';
import { BrokerError } from '../../../functions/lib/shared/errors';

const seedFromEnv = (raw: string | undefined): number | undefined => {
  if (raw === undefined || raw.trim() === '') return 1129;
  if (raw === 'random') return undefined;
  const seed = Number(raw);
  if (!Number.isSafeInteger(seed))
    throw new Error(`FUZZ_SEED must be an integer or "random", not ${JSON.stringify(raw)}`);
  return seed;
};

export const FUZZ_SEED = seedFromEnv(process.env.FUZZ_SEED);

/** fast-check parameters: `numRuns` runs from the fixed seed (or a random one, see above). */
export const runs = (numRuns: number): fc.Parameters<unknown> =>
  FUZZ_SEED === undefined ? { numRuns } : { numRuns, seed: FUZZ_SEED };

/** A field left out of a generated object. */
export const ABSENT: unique symbol = Symbol('absent');
type Absent = typeof ABSENT;

/** Any JSON value, small: what a caller, an endpoint or a table writer can put where something else belongs. */
export const junk = (): fc.Arbitrary<unknown> =>
  fc.oneof(
    fc.constantFrom(null, true, false, 0, -1, 1.5, 1e21, '', 'null', '{}', '[]'),
    fc.string({ maxLength: 16 }),
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.jsonValue({ maxDepth: 2 }),
  );

/** Mostly `valid`, sometimes junk, sometimes left out. */
export const mostly = <T>(valid: fc.Arbitrary<T>, weight = 4): fc.Arbitrary<T | unknown> =>
  fc.oneof(
    { weight, arbitrary: valid },
    { weight: 1, arbitrary: junk() },
    { weight: 1, arbitrary: fc.constant(ABSENT) },
  );

/** An object of the model's fields, without those generated as ABSENT, sometimes with an extra field. */
export const shaped = (model: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<Record<string, unknown>> =>
  fc
    .tuple(
      fc.record(model),
      fc.oneof(
        { weight: 9, arbitrary: fc.constant(null) },
        { weight: 1, arbitrary: fc.tuple(fc.string({ maxLength: 12 }), junk()) },
      ),
    )
    .map(([fields, extra]) => {
      const out: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(fields)) if (value !== (ABSENT as Absent | unknown)) out[key] = value;
      if (extra)
        Object.defineProperty(out, extra[0], { value: extra[1], enumerable: true, writable: true, configurable: true });
      return out;
    });

/** Calls `fn`; a result is returned, a BrokerError is returned as such, anything else thrown fails the property. */
export const outcomeOf = <T>(fn: () => T): { result: T } | { refused: BrokerError } => {
  try {
    return { result: fn() };
  } catch (err) {
    if (err instanceof BrokerError) return { refused: err };
    throw new Error(
      `threw ${(err as Error)?.name ?? typeof err} instead of a BrokerError: ${String((err as Error)?.message ?? err)}`,
    );
  }
};

/** The OAuth error shape every refusal leaves the function in. */
export const isOAuthErrorBody = (v: unknown): v is { error: string; error_description: string; status: number } =>
  isRecord(v) &&
  typeof v.error === 'string' &&
  ['invalid_request', 'invalid_scope', 'access_denied', 'server_error', 'temporarily_unavailable'].includes(v.error) &&
  typeof v.error_description === 'string' &&
  v.error_description !== '' &&
  Number.isInteger(v.status) &&
  (v.status as number) >= 400 &&
  (v.status as number) <= 599;

/** A proof as the caller signed it, or with one part missing, replaced or edited. */
export const proofVariants = (valid: IdentityProof): fc.Arbitrary<unknown> => {
  const headerNames = fc.constantFrom(
    'authorization',
    'x-amz-date',
    'host',
    'x-limitrail-broker-audience',
    'x-amz-security-token',
    'constructor',
    'Authorization',
    '__proto__',
  );
  const editedHeaders = fc
    .tuple(headerNames, fc.oneof(fc.string({ maxLength: 40 }), junk(), fc.constant(ABSENT)))
    .map(([name, value]) => {
      const headers: Record<string, unknown> = { ...valid.headers };
      if (value === ABSENT) delete headers[name];
      else Object.defineProperty(headers, name, { value, enumerable: true, writable: true, configurable: true });
      return headers;
    });
  return fc.oneof(
    { weight: 8, arbitrary: fc.constant(valid) },
    { weight: 2, arbitrary: editedHeaders.map((headers) => ({ ...valid, headers })) },
    {
      weight: 1,
      arbitrary: fc
        .dictionary(fc.string({ maxLength: 20 }), fc.oneof(fc.string({ maxLength: 20 }), junk()), { maxKeys: 30 })
        .map((extra) => ({ ...valid, headers: { ...valid.headers, ...extra } })),
    },
    {
      weight: 2,
      arbitrary: shaped({
        url: mostly(fc.constant(valid.url)),
        headers: mostly(fc.constant(valid.headers)),
        body: mostly(fc.constant(valid.body)),
      }),
    },
    { weight: 1, arbitrary: junk() },
    { weight: 1, arbitrary: fc.constant(ABSENT) },
  );
};
