import { afterEach, describe, expect, it, vi } from 'vitest';
import { withinDeadline } from '../../../functions/lib/shared/deadline';

afterEach(() => vi.useRealTimers());

describe('withinDeadline with node timers', () => {
  it('answers what settles in time and leaves no timer behind (a warm container keeps no stray timers)', async () => {
    vi.useFakeTimers();
    await expect(withinDeadline(Promise.resolve('token'), 5_000, () => new Error('late'))).resolves.toBe('token');
    expect(vi.getTimerCount()).toBe(0);
    await expect(withinDeadline(Promise.reject(new Error('down')), 5_000, () => new Error('late'))).rejects.toThrow(
      'down',
    );
    expect(vi.getTimerCount()).toBe(0);
  });

  it('fails with the late error once the budget has passed, a negative budget at once', async () => {
    vi.useFakeTimers();
    const never = new Promise<string>(() => {});
    const late = withinDeadline(never, 1_000, () => new Error('late'));
    const caught = late.catch((err: Error) => err.message);
    await vi.advanceTimersByTimeAsync(999);
    let settled = false;
    void caught.then(() => {
      settled = true;
    });
    await Promise.resolve();
    expect(settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await expect(caught).resolves.toBe('late');
    const overdue = withinDeadline(never, -50, () => new Error('overdue')).catch((err: Error) => err.message);
    await vi.advanceTimersByTimeAsync(0);
    await expect(overdue).resolves.toBe('overdue');
  });
});
