import { describe, expect, it } from 'vitest';
import { errorLogFields, quote, UnavailableError } from '../../../functions/lib/shared/errors';

describe('OAuth errors and what is logged of them', () => {
  it('tells the caller when to retry only when the broker knows', () => {
    const known = new UnavailableError('busy', 'force_refresh_budget', { retryAfterSeconds: 12 });
    expect(known.toOAuth()).toMatchObject({ status: 503, retryAfterSeconds: 12 });
    const unknown = new UnavailableError('busy', 'force_refresh_budget').toOAuth();
    expect(Object.keys(unknown)).not.toContain('retryAfterSeconds');
  });

  it('quotes caller text JSON-escaped, cut only beyond the limit', () => {
    expect(quote('a'.repeat(64))).toBe(JSON.stringify('a'.repeat(64)));
    expect(quote('a'.repeat(65))).toBe(JSON.stringify(`${'a'.repeat(64)}…`));
    expect(quote('x"y', 2)).toBe(JSON.stringify('x"…'));
    expect(quote(12)).toBe('"12"');
  });

  it('logs an unknown error by its name only, and a thrown non-error by its type', () => {
    const err = new TypeError('token=sk-live-secret in the message');
    expect(errorLogFields(err)).toEqual({ reason: 'unexpected', detail: 'TypeError' });
    expect(errorLogFields('sk-live-secret')).toEqual({ reason: 'unexpected', detail: 'string' });
    expect(errorLogFields(undefined)).toEqual({ reason: 'unexpected', detail: 'undefined' });
  });
});
