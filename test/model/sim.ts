/**
 * The simulation's time and interleavings. One true time (`nowMs`) moves only when nothing else can run: work waits
 * either on a timer (a sleep, an endpoint's latency, a table call's latency: fake time) or on a scheduling point, and
 * fast-check's scheduler (`fc.scheduler()`) picks which waiting point goes next. So every table call, endpoint answer
 * and wake-up is a step whose order the scheduler chooses, a seed and path replay that order exactly, and a step that
 * never moves time cannot run forever unnoticed (MAX_STEPS).
 */
import type { Scheduler } from 'fast-check';

/** Whatever can crash: its pending points and timers then never resume (its in-flight work is abandoned). */
export interface Actor {
  readonly name: string;
  readonly crashed: boolean;
}

interface Timer {
  atMs: number;
  seq: number;
  actor: Actor;
  wake: () => void;
}

/** A run that makes this many steps without finishing has a loop that never waits on time. */
export const MAX_STEPS = 60_000;

export class ProgressError extends Error {}

const never = new Promise<never>(() => undefined);
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

export class Sim {
  /** True time (epoch ms); each container's clock is this plus its skew. */
  nowMs: number;
  steps = 0;
  readonly #timers: Timer[] = [];
  #seq = 0;

  constructor(
    private readonly scheduler: Scheduler,
    startMs: number,
    /** Called after every step (a scheduled point released, or timers fired): the properties are checked there. */
    private readonly afterStep: () => void,
  ) {
    this.nowMs = startMs;
  }

  /** Resolves once true time has moved `ms` on, unless `actor` crashed meanwhile. */
  sleep(actor: Actor, ms: number): Promise<void> {
    return new Promise((wake) => {
      const timer = { atMs: this.nowMs + Math.max(0, ms), seq: this.#seq++, actor, wake };
      let i = this.#timers.length;
      while (i > 0 && this.#timers[i - 1]!.atMs > timer.atMs) i -= 1;
      this.#timers.splice(i, 0, timer);
    });
  }

  /** A scheduling point: resumes when the scheduler picks it; never for an actor that crashed meanwhile. */
  async point(actor: Actor, label: string): Promise<void> {
    await this.scheduler.schedule(Promise.resolve(), label);
    if (actor.crashed) await never;
  }

  /** Runs scheduled points (up to `maxSteps`) until none is waiting, without moving time. */
  async settle(maxSteps = Number.POSITIVE_INFINITY): Promise<void> {
    for (let n = 0; ; n++) {
      await turn();
      if (this.scheduler.count() === 0 || n >= maxSteps) return;
      await this.scheduler.waitOne();
      this.#stepped();
    }
  }

  /** Moves true time to `untilMs`, firing timers in order (those due at the same time together), settling between. */
  async runUntil(untilMs: number): Promise<void> {
    for (;;) {
      await this.settle();
      const next = this.#timers[0];
      if (next === undefined || next.atMs > untilMs) break;
      this.nowMs = Math.max(this.nowMs, next.atMs);
      while (this.#timers[0] !== undefined && this.#timers[0].atMs <= this.nowMs) {
        const timer = this.#timers.shift()!;
        if (!timer.actor.crashed) timer.wake();
      }
      this.#stepped();
    }
    this.nowMs = Math.max(this.nowMs, untilMs);
  }

  /** When the next live timer fires (undefined: none is set). */
  nextTimerMs(): number | undefined {
    return this.#timers.find((t) => !t.actor.crashed)?.atMs;
  }

  #stepped(): void {
    this.steps += 1;
    if (this.steps > MAX_STEPS) throw new ProgressError(`no end after ${MAX_STEPS} steps: a loop that never waits`);
    this.afterStep();
  }
}

/** A small seeded generator (mulberry32) for latencies and the lease's jitter: replayed with the run. */
export const seededRandom = (seed: number): (() => number) => {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
};

/** One of `choices`, drawn with `random`. */
export const pick = <T>(random: () => number, choices: readonly T[]): T =>
  choices[Math.floor(random() * choices.length)]!;
