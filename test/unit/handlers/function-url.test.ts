import { describe, expect, it } from 'vitest';
import { toUrlResponse } from '../../../functions/lib/handlers/function-url';

describe('the Function URL answer', () => {
  it('says when to retry a limited forced refresh in a Retry-After header, as the body does', () => {
    const answer = toUrlResponse({
      error: 'temporarily_unavailable',
      error_description: 'x',
      status: 503,
      retryAfterSeconds: 13,
    });
    expect(answer).toMatchObject({ statusCode: 503, headers: { 'retry-after': '13', 'cache-control': 'no-store' } });
    const without = toUrlResponse({ error: 'temporarily_unavailable', error_description: 'x', status: 503 }) as {
      headers: Record<string, string>;
    };
    expect(without.headers).not.toHaveProperty('retry-after');
  });
});
