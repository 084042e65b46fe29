/**
 * The conditions of the token table's writes, each named and stated twice: as a DynamoDB condition expression
 * fragment (what DynamoTokenTable sends) and as the same rule on the item's facts (`holds`, what the unit tests' fake
 * table evaluates), as Powertools names its `idempotencyKeyDoesNotExist`. The rules are lease-rules.ts's: a lease,
 * forced-fetch or forced-refresh budget time that is not a number counts as absent (`NOT attribute_type(x, :numberType)` comes first, so
 * a comparison of different types never decides: DynamoDB answers false, moto fails the request), and a time later
 * than any broker could have set it counts as expired (a lease) or as none (a forced fetch, a budget).
 */
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { CLOCK_SKEW_MS, latestLeaseEndMs } from '../lease/lease-rules';
import { TABLE_TTL_ATTRIBUTE } from './table-schema';

/** What the conditions look at on an item, as the table holds it (a value of another type than written: undefined). */
export interface ItemFacts {
  leaseOwner?: string | undefined;
  leaseUntilEpochMs?: number | undefined;
  forcedFetchAtEpochMs?: number | undefined;
  /** The stored token's expiry, when the item holds a binary token and a numeric expiry. */
  tokenExpiresAtEpochSec?: number | undefined;
  /** A forced-refresh budget item (one per caller and client): when a forced fetch last spent it. */
  budgetSpentAtEpochMs?: number | undefined;
}

export interface Condition {
  readonly name: string;
  readonly expression: string;
  readonly values: Record<string, AttributeValue>;
  readonly names?: Record<string, string>;
  /** The same rule on an item's facts. */
  holds(item: ItemFacts): boolean;
}

const NUMBER_TYPE = { ':numberType': { S: 'N' } } as const;
const BINARY_TYPE = { ':binaryType': { S: 'B' } } as const;
const n = (value: number): AttributeValue => ({ N: String(value) });

/**
 * A coordination time (lease end, forced fetch) that no longer holds anyone off: absent or not a number, at most
 * `notAfter`, or later than `writableUntil` (beyond what a broker could have written: ignored).
 */
const timeReleased = (
  name: string,
  attribute: 'leaseUntilEpochMs' | 'forcedFetchAtEpochMs' | 'budgetSpentAtEpochMs',
  bounds: { notAfter: [string, number]; writableUntil: [string, number] },
): Condition => {
  const [low, lowMs] = bounds.notAfter;
  const [high, highMs] = bounds.writableUntil;
  return {
    name,
    expression: `(NOT attribute_type(${attribute}, :numberType) OR ${attribute} <= ${low} OR ${attribute} > ${high})`,
    values: { ...NUMBER_TYPE, [low]: n(lowMs), [high]: n(highMs) },
    holds: (item) => {
      const at = item[attribute];
      return at === undefined || at <= lowMs || at > highMs;
    },
  };
};

/** The refresh lease may be taken: none, ended, or pinned beyond any holder's reach (lease-rules.ts isLeaseHeld). */
export const leaseTakeable = (nowMs: number, leaseDurationMs: number): Condition =>
  timeReleased('leaseTakeable', 'leaseUntilEpochMs', {
    notAfter: [':now', nowMs],
    writableUntil: [':latestLeaseEnd', latestLeaseEndMs(nowMs, leaseDurationMs)],
  });

/** No forced fetch within the interval (or one recorded beyond the skew: not a broker's; forcedFetchBlockedUntilMs). */
export const forcedFetchQuiet = (nowMs: number, intervalMs: number): Condition =>
  timeReleased('forcedFetchQuiet', 'forcedFetchAtEpochMs', {
    notAfter: [':quietSince', nowMs - intervalMs],
    writableUntil: [':latestForced', nowMs + CLOCK_SKEW_MS],
  });

/**
 * The caller's forced-refresh budget is unspent: no forced fetch for this caller and client within the interval (or
 * one recorded beyond the skew: not a broker's, ignored). The same bound as forcedFetchQuiet, on the budget item.
 */
export const forceBudgetUnspent = (nowMs: number, intervalMs: number): Condition =>
  timeReleased('forceBudgetUnspent', 'budgetSpentAtEpochMs', {
    notAfter: [':budgetSince', nowMs - intervalMs],
    writableUntil: [':latestBudget', nowMs + CLOCK_SKEW_MS],
  });

/**
 * The cache never goes back in time: no stored token lives longer than the one written. An item whose token is not
 * binary or whose expiry is not a number was not written by a broker: it never blocks a write. `replaces`: the sealed
 * token of an item found unusable, overwritten whatever expiry it claims.
 */
export const noLongerLivedToken = (expiresAtEpochSec: number, replaces?: Uint8Array): Condition => ({
  name: 'noLongerLivedToken',
  expression:
    '(NOT attribute_type(tokenCiphertext, :binaryType) OR NOT attribute_type(#expires, :numberType) OR #expires <= :expires' +
    `${replaces === undefined ? '' : ' OR tokenCiphertext = :replaces'})`,
  values: {
    ...NUMBER_TYPE,
    ...BINARY_TYPE,
    ':expires': n(expiresAtEpochSec),
    ...(replaces === undefined ? {} : { ':replaces': { B: replaces } }),
  },
  names: { '#expires': TABLE_TTL_ATTRIBUTE },
  holds: ({ tokenExpiresAtEpochSec: stored }) => stored === undefined || stored <= expiresAtEpochSec,
});

/** Nobody holds the lease (a write without a lease: degraded or lease-less mode). */
export const noLeaseOwner = (): Condition => ({
  name: 'noLeaseOwner',
  expression: 'attribute_not_exists(leaseOwner)',
  values: {},
  holds: ({ leaseOwner }) => leaseOwner === undefined,
});

/** Nobody else holds the lease: none, or `owner` (a holder's write). */
export const leaseFreeOrOwnedBy = (owner: string): Condition => ({
  name: 'leaseFreeOrOwnedBy',
  expression: '(attribute_not_exists(leaseOwner) OR leaseOwner = :owner)',
  values: { ':owner': { S: owner } },
  holds: ({ leaseOwner }) => leaseOwner === undefined || leaseOwner === owner,
});

/** `owner` holds the lease (renewal, release). */
export const ownsLease = (owner: string): Condition => ({
  name: 'ownsLease',
  expression: 'leaseOwner = :owner',
  values: { ':owner': { S: owner } },
  holds: ({ leaseOwner }) => leaseOwner === owner,
});

/** Conditions joined with AND, for one write. */
export const allOf = (...conditions: Condition[]): Condition => ({
  name: conditions.map((c) => c.name).join(' AND '),
  expression: conditions.map((c) => c.expression).join(' AND '),
  values: Object.assign({}, ...conditions.map((c) => c.values)),
  names: Object.assign({}, ...conditions.map((c) => c.names ?? {})),
  holds: (item) => conditions.every((c) => c.holds(item)),
});
