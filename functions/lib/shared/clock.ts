/** The one clock. Everything that needs "now" takes a Clock, so tests move time instead of stubbing decisions. */
export interface Clock {
  nowMs(): number;
}

export const systemClock: Clock = { nowMs: () => Date.now() };

export const toEpochSec = (epochMs: number): number => Math.floor(epochMs / 1000);
