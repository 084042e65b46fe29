import { describe, expect, it } from 'vitest';
import { assertInteger, assertKnownKeys, assertRecord, assertString } from '../../../functions/lib/shared/assert';

const fail = (message: string): never => {
  throw new Error(message);
};

describe('assertions of parsed input', () => {
  it('takes an integer at both ends of its range and refuses one past either end, or a fraction', () => {
    expect(() => assertInteger(1, 'n', fail, 1, 5)).not.toThrow();
    expect(() => assertInteger(5, 'n', fail, 1, 5)).not.toThrow();
    expect(() => assertInteger(0, 'n', fail, 1, 5)).toThrow('n must be an integer from 1 to 5');
    expect(() => assertInteger(6, 'n', fail, 1, 5)).toThrow('n must be an integer from 1 to 5');
    expect(() => assertInteger(2.5, 'n', fail, 1, 5)).toThrow('n must be an integer from 1 to 5');
    expect(() => assertInteger('3', 'n', fail, 1, 5)).toThrow('n must be an integer from 1 to 5');
  });

  it('refuses an empty string by default, and says what it expected', () => {
    expect(() => assertString('x', 's', fail)).not.toThrow();
    expect(() => assertString('', 's', fail)).toThrow('s must be a non-empty string');
    expect(() => assertString(7, 's', fail)).toThrow('s must be a non-empty string');
    expect(() => assertString('', 's', fail, 'any string', () => true)).not.toThrow();
  });

  it('says an object is expected, and names an unknown key cut to 64 characters', () => {
    expect(() => assertRecord([], 'body', fail)).toThrow('body must be an object');
    const long = 'k'.repeat(200);
    expect(() => assertKnownKeys({ a: 1, [long]: 2 }, new Set(['a']), 'body', fail)).toThrow(
      `body has unknown field "${'k'.repeat(64)}"`,
    );
  });
});
