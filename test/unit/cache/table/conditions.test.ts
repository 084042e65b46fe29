import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { latestForcedFetchMs, latestLeaseEndMs } from '../../../../functions/lib/cache/lease/lease-rules';
import {
  allOf,
  type Condition,
  forceBudgetUnspent,
  forcedFetchQuiet,
  type ItemFacts,
  leaseFreeOrOwnedBy,
  leaseTakeable,
  noLeaseOwner,
  noLongerLivedToken,
  ownsLease,
} from '../../../../functions/lib/cache/table/conditions';
import { TABLE_TTL_ATTRIBUTE } from '../../../../functions/lib/cache/table/table-schema';
import {
  checkPlaceholders,
  ExpressionError,
  evaluateCondition,
  type Item,
} from '../../../support/fakes/condition-expression';
import { runs } from '../../../support/fakes/fuzz';

/**
 * Each named condition (conditions.ts) is stated twice: the DynamoDB condition expression DynamoTokenTable sends, and
 * `holds`, which the unit tests' FakeTable evaluates. Here both are judged on the same generated items (attributes
 * missing, of another type, numbers at and around every bound): the expression, evaluated by DynamoDB's rules
 * (test/support/fakes/condition-expression.ts), answers what its twin answers, so the unit tests of the lease
 * protocol test what DynamoDB does.
 */

/** What the twins see on a stored item, as ItemFacts documents it (a value of another type than written: none). */
const NOT_A_STRING_OWNER = '\u0000an owner that is not a string';
const factsOf = (item: Item): ItemFacts => {
  const num = (v: AttributeValue | undefined) => (v?.N === undefined ? undefined : Number(v.N));
  return {
    // DynamoDB sees a leaseOwner of any type as an owner (attribute_not_exists is false, `= :owner` false): the
    // twins get one that is nobody's. ItemFacts has no other way to say it; FakeTable only stores strings.
    leaseOwner: item.leaseOwner === undefined ? undefined : (item.leaseOwner.S ?? NOT_A_STRING_OWNER),
    leaseUntilEpochMs: num(item.leaseUntilEpochMs),
    forcedFetchAtEpochMs: num(item.forcedFetchAtEpochMs),
    budgetSpentAtEpochMs: num(item.budgetSpentAtEpochMs),
    tokenExpiresAtEpochSec: item.tokenCiphertext?.B === undefined ? undefined : num(item[TABLE_TTL_ATTRIBUTE]),
  };
};

interface Params {
  nowMs: number;
  leaseDurationMs: number;
  intervalMs: number;
  expiresAtEpochSec: number;
  owner: string;
  replaces: Uint8Array;
}

const params: fc.Arbitrary<Params> = fc.record({
  nowMs: fc.integer({ min: 1_700_000_000_000, max: 1_900_000_000_000 }),
  leaseDurationMs: fc.integer({ min: 1, max: 120_000 }),
  intervalMs: fc.integer({ min: 0, max: 3_600_000 }),
  expiresAtEpochSec: fc.integer({ min: 1_700_000_000, max: 1_900_000_000 }),
  owner: fc.constantFrom('container-a', 'container-b'),
  replaces: fc.uint8Array({ minLength: 1, maxLength: 4 }),
});

/** Every bound a condition compares with, for these parameters. */
const boundsOf = (p: Params): number[] => [
  p.nowMs,
  latestLeaseEndMs(p.nowMs, p.leaseDurationMs),
  p.nowMs - p.intervalMs,
  latestForcedFetchMs(p.nowMs),
  p.expiresAtEpochSec,
];

/** Any value an attribute may hold: mostly numbers at or next to a bound, else another type. */
const valueNear = (p: Params): fc.Arbitrary<AttributeValue> => {
  const near = fc.tuple(fc.constantFrom(...boundsOf(p)), fc.constantFrom(-1, -0.5, 0, 0.5, 1)).map(([b, d]) => b + d);
  return fc.oneof(
    { weight: 6, arbitrary: near.map((n) => ({ N: String(n) })) },
    { weight: 1, arbitrary: fc.integer().map((n) => ({ N: String(n) })) },
    { weight: 1, arbitrary: near.map((n) => ({ S: String(n) })) },
    { weight: 1, arbitrary: fc.constantFrom(p.owner, 'container-a', 'container-b', '').map((s) => ({ S: s })) },
    { weight: 1, arbitrary: fc.constantFrom<AttributeValue>({ BOOL: true }, { NULL: true }, { SS: ['1'] }) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(p.replaces, Buffer.from('sealed')).map((b) => ({ B: Buffer.from(b) })),
    },
  );
};

const ATTRIBUTES = [
  'leaseOwner',
  'leaseUntilEpochMs',
  'forcedFetchAtEpochMs',
  'budgetSpentAtEpochMs',
  'tokenCiphertext',
  TABLE_TTL_ATTRIBUTE,
];

const itemFor = (p: Params): fc.Arbitrary<Item> =>
  fc.record(Object.fromEntries(ATTRIBUTES.map((a) => [a, valueNear(p)])), { requiredKeys: [] }) as fc.Arbitrary<Item>;

const cases = params.chain((p) => fc.tuple(fc.constant(p), itemFor(p)));

/** The conditions DynamoTokenTable sends, alone and joined as it joins them. */
const fragments: [string, (p: Params) => Condition][] = [
  ['leaseTakeable', (p) => leaseTakeable(p.nowMs, p.leaseDurationMs)],
  ['forcedFetchQuiet', (p) => forcedFetchQuiet(p.nowMs, p.intervalMs)],
  ['forceBudgetUnspent', (p) => forceBudgetUnspent(p.nowMs, p.intervalMs)],
  ['noLongerLivedToken', (p) => noLongerLivedToken(p.expiresAtEpochSec)],
  ['noLeaseOwner', () => noLeaseOwner()],
  ['leaseFreeOrOwnedBy', (p) => leaseFreeOrOwnedBy(p.owner)],
  ['ownsLease', (p) => ownsLease(p.owner)],
  ['a forced take', (p) => allOf(leaseTakeable(p.nowMs, p.leaseDurationMs), forcedFetchQuiet(p.nowMs, p.intervalMs))],
  ['a write without a lease', (p) => allOf(noLongerLivedToken(p.expiresAtEpochSec), noLeaseOwner())],
  ["a holder's write", (p) => allOf(noLongerLivedToken(p.expiresAtEpochSec), leaseFreeOrOwnedBy(p.owner))],
];

/** What DynamoDB answers: the expression on the item, in a request that defines exactly the placeholders it uses. */
const dynamoAnswer = (c: Condition, item: Item): boolean => {
  checkPlaceholders({ expressions: [c.expression], names: c.names, values: c.values });
  return evaluateCondition({ expression: c.expression, names: c.names, values: c.values }, item);
};

describe('each condition expression and its twin (holds)', () => {
  it.each(fragments)('%s: DynamoDB answers what holds answers, on any item', (_, build) => {
    const answers = new Set<boolean>();
    fc.assert(
      fc.property(cases, ([p, item]) => {
        const condition = build(p);
        const answer = dynamoAnswer(condition, item);
        expect(answer).toBe(condition.holds(factsOf(item)));
        answers.add(answer);
      }),
      runs(2000),
    );
    // Both answers were reached: the items were not all on one side of the condition.
    expect([...answers].sort()).toEqual([false, true]);
  });

  it('noLongerLivedToken with `replaces`: as without it, or the item holds exactly the sealed token it replaces', () => {
    // The twin (holds) does not model `replaces` (ItemFacts has no ciphertext; FakeTable never replaces): the
    // expression is held to the documented rule instead.
    const overwritten = new Set<boolean>();
    fc.assert(
      fc.property(cases, ([p, item]) => {
        const condition = noLongerLivedToken(p.expiresAtEpochSec, p.replaces);
        const sameToken =
          item.tokenCiphertext?.B !== undefined && Buffer.from(item.tokenCiphertext.B).equals(Buffer.from(p.replaces));
        const expected = noLongerLivedToken(p.expiresAtEpochSec).holds(factsOf(item)) || sameToken;
        expect(dynamoAnswer(condition, item)).toBe(expected);
        if (sameToken) overwritten.add(noLongerLivedToken(p.expiresAtEpochSec).holds(factsOf(item)));
      }),
      runs(2000),
    );
    // Among the items holding the replaced token were ones a longer-lived token would otherwise keep.
    expect(overwritten.has(false)).toBe(true);
  });
});

describe('the condition-expression evaluator (DynamoDB rules)', () => {
  const item: Item = { n: { N: '10' }, s: { S: 'abc' }, b: { B: Buffer.of(1, 2) }, t: { BOOL: true } };
  const values: Record<string, AttributeValue> = {
    ':nine': { N: '9' },
    ':ten': { N: '10' },
    ':tenText': { S: '10' },
    ':abc': { S: 'abc' },
    ':N': { S: 'N' },
    ':S': { S: 'S' },
    ':bytes': { B: Buffer.of(1, 2) },
  };
  const holds = (expression: string, names?: Record<string, string>) =>
    evaluateCondition({ expression, names, values }, item);

  it('compares numbers as numbers, strings and binaries by their bytes', () => {
    expect(holds('n > :nine')).toBe(true);
    expect(holds('n <= :ten AND n >= :ten AND n = :ten')).toBe(true);
    expect(holds(':tenText < :abc')).toBe(true);
    expect(holds('s = :abc AND b = :bytes')).toBe(true);
  });

  it('answers false for a comparison with a missing attribute or a value of another type (<>: true)', () => {
    expect(holds('missing < :ten')).toBe(false);
    expect(holds('missing >= :ten')).toBe(false);
    expect(holds('missing = :ten')).toBe(false);
    expect(holds('missing <> :ten')).toBe(true);
    expect(holds('n = :tenText')).toBe(false);
    expect(holds('s > :nine')).toBe(false);
    expect(holds('t < :ten')).toBe(false);
  });

  it('has the functions of the subset', () => {
    expect(holds('attribute_exists(n) AND attribute_not_exists(missing)')).toBe(true);
    expect(holds('attribute_exists(missing) OR attribute_not_exists(n)')).toBe(false);
    expect(holds('attribute_type(n, :N) AND attribute_type(s, :S) AND NOT attribute_type(n, :S)')).toBe(true);
    expect(holds('attribute_type(missing, :N)')).toBe(false);
    expect(holds('attribute_type(#x, :N)', { '#x': 'n' })).toBe(true);
  });

  it('binds comparisons, then NOT, then AND, then OR; parentheses first', () => {
    expect(holds('n = :ten OR n = :nine AND s = :tenText')).toBe(true);
    expect(holds('(n = :ten OR n = :nine) AND s = :tenText')).toBe(false);
    expect(holds('NOT n = :nine AND s = :abc')).toBe(true);
    expect(holds('NOT (n = :ten AND s = :tenText)')).toBe(true);
    expect(holds('NOT NOT n = :ten')).toBe(true);
    expect(evaluateCondition({ expression: 'n = :ten', values }, undefined)).toBe(false);
    expect(evaluateCondition({ expression: 'attribute_not_exists(n)', values }, undefined)).toBe(true);
  });

  it('refuses what DynamoDB refuses: bad syntax, undefined or unused placeholders', () => {
    for (const bad of ['', 'n = ', '(n = :ten', 'n = :ten)', 'n = :ten s = :abc', 'n = :undefinedValue', '#x = :ten'])
      expect(() => holds(bad), bad).toThrow(ExpressionError);
    expect(() => checkPlaceholders({ expressions: ['n = :ten'], values: { ':ten': values[':ten']! } })).not.toThrow();
    expect(() => checkPlaceholders({ expressions: ['n = :ten'], values: { ...values } })).toThrow(/unused/);
    expect(() => checkPlaceholders({ expressions: ['#n = :ten'], values: { ':ten': values[':ten']! } })).toThrow(
      /not defined/,
    );
    expect(() =>
      checkPlaceholders({ expressions: ['n = :ten'], names: { '#n': 'n' }, values: { ':ten': values[':ten']! } }),
    ).toThrow(/unused/);
  });
});
