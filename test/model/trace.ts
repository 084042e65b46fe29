/**
 * What happened in one run, step by step: which container did what, at which true time and on which clock. Kept as
 * plain records while the run goes (cheap) and formatted only when a violation is reported.
 */
import type { Actor } from './sim';

export interface TraceEntry {
  trueMs: number;
  /** The container's clock when it has one (true time plus its skew). */
  clockMs?: number;
  who: string;
  /** Formatted only when the trace is shown. */
  what: string | (() => string);
}

export class Trace {
  readonly entries: TraceEntry[] = [];

  constructor(private readonly startMs: number) {}

  add(trueMs: number, who: Actor | string, what: string | (() => string), clockMs?: number): void {
    this.entries.push({ trueMs, who: typeof who === 'string' ? who : who.name, what, clockMs });
  }

  /** Seconds since the run started, as `+12.345s`. */
  at(ms: number): string {
    return `+${((ms - this.startMs) / 1000).toFixed(3)}s`;
  }

  format(last = Number.POSITIVE_INFINITY): string {
    const shown = this.entries.slice(-last);
    const skipped = this.entries.length - shown.length;
    const lines = shown.map((e) => {
      const clock = e.clockMs === undefined ? '' : ` [clock ${this.at(e.clockMs)}]`;
      const what = typeof e.what === 'string' ? e.what : e.what();
      return `  ${this.at(e.trueMs).padStart(10)} ${e.who.padEnd(6)}${clock} ${what}`;
    });
    return [...(skipped > 0 ? [`  ... ${skipped} earlier steps`] : []), ...lines].join('\n');
  }
}
