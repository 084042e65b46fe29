import { describe, expect, it } from 'vitest';
import { fullJitterDelayMs } from '../../../functions/lib/shared/backoff';
import { type Reason, UnavailableError, UpstreamError } from '../../../functions/lib/shared/errors';
import { isRetryable, retryDelayMs } from '../../../functions/lib/upstream/endpoint-token-provider';
import { parseRetryAfterMs } from '../../../functions/lib/upstream/token-endpoint';

const backoffDelayMs = (attempt: number, random: number) =>
  fullJitterDelayMs(attempt, random, { baseMs: 25, capMs: 400, floorMs: 5 });

describe('retry decisions', () => {
  it('retries network errors, timeouts, 429 and 5xx only', () => {
    for (const reason of [
      'upstream_unreachable',
      'upstream_timeout',
      'upstream_rate_limited',
      'upstream_unavailable',
    ] as const satisfies readonly Reason[]) {
      expect(isRetryable(new UnavailableError('x', reason))).toBe(true);
    }
    expect(isRetryable(new UpstreamError('x', 'upstream_refused'))).toBe(false);
    expect(isRetryable(new UpstreamError('x', 'upstream_invalid_client'))).toBe(false);
    expect(isRetryable(new UnavailableError('x', 'deadline_exceeded'))).toBe(false);
    expect(isRetryable(new Error('boom'))).toBe(false);
  });

  it('backs off exponentially with full jitter, capped', () => {
    expect(retryDelayMs(1, 0.999)).toBe(99);
    expect(retryDelayMs(2, 0.999)).toBe(199);
    expect(retryDelayMs(10, 0.999)).toBe(1998);
    expect(retryDelayMs(3, 0)).toBe(0);
  });

  it('never waits less than Retry-After', () => {
    expect(retryDelayMs(1, 0.5, 3000)).toBe(3000);
    expect(retryDelayMs(5, 0.999, 10)).toBe(1598);
  });

  it('reads Retry-After as seconds or an HTTP date', () => {
    const now = Date.parse('2026-11-29T06:00:00Z');
    expect(parseRetryAfterMs('7', now)).toBe(7000);
    expect(parseRetryAfterMs('Sun, 29 Nov 2026 06:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfterMs('Sun, 29 Nov 2026 05:00:00 GMT', now)).toBe(0);
    expect(parseRetryAfterMs('soon', now)).toBeUndefined();
    expect(parseRetryAfterMs(null, now)).toBeUndefined();
  });

  it('waits for a lease holder with capped, jittered backoff and a small floor', () => {
    expect(backoffDelayMs(0, 0.999)).toBe(24);
    expect(backoffDelayMs(10, 0.999)).toBe(399);
    expect(backoffDelayMs(3, 0)).toBe(5);
  });
});
