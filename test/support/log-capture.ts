/**
 * The logs of in-process containers. The broker logs through Powertools (Logger and Metrics), which write to the
 * process's stdout, and warnings and errors to stderr, through their own Console; every in-process container
 * shares this test process's streams. Capturing puts each JSON line written to either stream into the given
 * arrays instead of the terminal, for the rest of the test file (vitest runs each file in its own process). Any
 * other output passes through.
 */
type Write = typeof process.stdout.write;

const targets = new Set<string[]>();
const patched = new WeakSet<NodeJS.WriteStream>();

const intercept = (stream: NodeJS.WriteStream): void => {
  if (patched.has(stream)) return;
  patched.add(stream);
  const write = stream.write.bind(stream) as (chunk: unknown, ...rest: unknown[]) => boolean;
  stream.write = ((chunk: unknown, ...rest: unknown[]) => {
    const text =
      typeof chunk === 'string' ? chunk : chunk instanceof Uint8Array ? Buffer.from(chunk).toString('utf8') : '';
    const lines = text.split('\n').filter((line) => line.length > 0);
    if (targets.size === 0 || lines.length === 0 || !lines.every((line) => line.startsWith('{')))
      return write(chunk, ...rest);
    for (const target of targets) target.push(...lines);
    const done = rest.find((arg): arg is () => void => typeof arg === 'function');
    done?.();
    return true;
  }) as Write;
};

/** Appends every JSON line this process writes to stdout or stderr to `lines` from now on; returns `lines`. */
export const captureLogLines = (lines: string[]): string[] => {
  intercept(process.stdout);
  intercept(process.stderr);
  targets.add(lines);
  return lines;
};

/** Stops appending to `lines`. */
export const stopCapturing = (lines: string[]): void => {
  targets.delete(lines);
};
