/**
 * Checks of untrusted values (events, URL bodies, settings, secrets, upstream answers) that narrow their type and
 * name the field in the message: `"scopes[2]" must be an RFC 6749 scope token` (the style of oauth4webapi's
 * assertString). Each caller passes how a failure is raised (`Fail`): a 400 for an event, a configuration error for
 * a setting, and so on. Messages quote field names and positions, never the value.
 */
import { isScopeToken } from './scopes';

/** Raises the caller's error for a message such as `BROKER_CLIENTS.limitrail.scopes must be a non-empty array`. */
export type Fail = (message: string) => never;

/** A JSON object (not null, not an array): the shape every untrusted event, body and setting is checked for. */
export const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

export function assertRecord(
  value: unknown,
  field: string,
  fail: Fail,
  what = 'an object',
): asserts value is Record<string, unknown> {
  if (!isRecord(value)) fail(`${field} must be ${what}`);
}

/** Every key of `value` is one of `known`; the first other one is named (cut to 64 characters). */
export function assertKnownKeys(
  value: Record<string, unknown>,
  known: ReadonlySet<string>,
  field: string,
  fail: Fail,
): void {
  const unknown = Object.keys(value).find((key) => !known.has(key));
  if (unknown !== undefined) fail(`${field} has unknown field ${JSON.stringify(unknown.slice(0, 64))}`);
}

/** A string that `valid` accepts (default: not empty). */
export function assertString(
  value: unknown,
  field: string,
  fail: Fail,
  what = 'a non-empty string',
  valid: (s: string) => boolean = (s) => s !== '',
): asserts value is string {
  if (typeof value !== 'string' || !valid(value)) fail(`${field} must be ${what}`);
}

/** A whole number from `min` to `max`. */
export function assertInteger(
  value: unknown,
  field: string,
  fail: Fail,
  min: number,
  max: number,
): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(`${field} must be an integer from ${min} to ${max}`);
  }
}

export function assertBoolean(value: unknown, field: string, fail: Fail): asserts value is boolean {
  if (typeof value !== 'boolean') fail(`${field} must be a boolean`);
}

/** An array with at least `minLength` entries (default 1). */
export function assertArray(
  value: unknown,
  field: string,
  fail: Fail,
  what = 'a non-empty array',
  minLength = 1,
): asserts value is unknown[] {
  if (!Array.isArray(value) || value.length < minLength) fail(`${field} must be ${what}`);
}

/** Every entry an RFC 6749 scope token, and one of `allowed` when given; `itemField(i)` names entry i. */
export function assertScopeTokens(
  values: readonly unknown[],
  itemField: (index: number) => string,
  fail: Fail,
  what: string,
  allowed?: ReadonlySet<string>,
): asserts values is string[] {
  values.forEach((s, i) => {
    if (!isScopeToken(s) || (allowed !== undefined && !allowed.has(s))) fail(`${itemField(i)} must be ${what}`);
  });
}
