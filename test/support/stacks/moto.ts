/**
 * Runs a private moto_server (Python moto: DynamoDB, Secrets Manager, KMS, STS) on loopback for local
 * runs and integration tests. Each call starts its own server on its own port, so parallel runs never
 * share state. Its output is kept in memory and shown only if it fails to start.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export interface MotoServer {
  /** http://127.0.0.1:PORT, for AWS_ENDPOINT_URL or a client's `endpoint`. */
  readonly endpoint: string;
  readonly port: number;
  readonly pid: number;
  /** SIGTERM, then SIGKILL after a grace period; resolves once the process has exited. Idempotent. */
  stop(): Promise<void>;
}

export interface StartMotoOptions {
  /** Default: a free loopback port. */
  port?: number;
  /** How long to wait for the server to answer. Default 30 s (moto imports a lot of Python). */
  readyTimeoutMs?: number;
}

const HOST = '127.0.0.1';
const STOP_GRACE_MS = 3_000;
const OUTPUT_TAIL_CHARS = 8_000;

/** A free TCP port on loopback (the OS picks; we release it just before moto binds it). */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });

// Safety net: whatever happens to this process, leave no moto_server behind.
const running = new Map<number, ChildProcess>();
const killAllNow = (): void => {
  for (const [pid] of running) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  running.clear();
};
let safetyNetInstalled = false;
const installSafetyNet = (): void => {
  if (safetyNetInstalled) return;
  safetyNetInstalled = true;
  process.on('exit', killAllNow);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    // Only when nobody else handles the signal: then the default is to die at once, without 'exit'.
    // A program with its own handler (local/start.ts) stops its servers itself.
    const onSignal = (): void => {
      if (process.listenerCount(signal) > 1) return;
      killAllNow();
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
};

class MotoStartError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'MotoStartError';
  }
}

const answers = async (endpoint: string): Promise<boolean> => {
  try {
    const res = await fetch(`${endpoint}/moto-api/`, { signal: AbortSignal.timeout(1_000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
};

/**
 * moto_server run through test/support/stacks/moto-serial.py, which makes it answer one request at a time: moto's DynamoDB does
 * not make a conditional write atomic across its request threads, real DynamoDB does, and the refresh lease relies
 * on it. Needs the Python that has moto as `python3` (MOTO_PYTHON overrides); moto_server's own Python otherwise.
 */
const SERIAL_LAUNCHER = join(dirname(fileURLToPath(import.meta.url)), 'moto-serial.py');
const motoPython = (): string | undefined => {
  const python = process.env.MOTO_PYTHON ?? 'python3';
  try {
    execFileSync(python, ['-c', 'import moto.server'], { stdio: 'ignore', timeout: 30_000 });
    return python;
  } catch {
    return undefined;
  }
};
let python: string | undefined | null = null;

const launch = async (port: number, readyTimeoutMs: number): Promise<MotoServer> => {
  const endpoint = `http://${HOST}:${port}`;
  if (python === null) python = motoPython();
  const [command, args] = python
    ? [python, [SERIAL_LAUNCHER, '-H', HOST, '-p', String(port)]]
    : ['moto_server', ['-H', HOST, '-p', String(port)]];
  const child = spawn(command, args, {
    detached: false,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PYTHONUNBUFFERED: '1' },
  });
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-OUTPUT_TAIL_CHARS);
  };
  // Always drain the pipes: moto logs every request, and a full pipe would stall it.
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);

  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let exitInfo: string | undefined;
  child.once('exit', (code, signal) => {
    exitInfo = signal ? `signal ${signal}` : `code ${code}`;
    if (child.pid !== undefined) running.delete(child.pid);
  });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));

  const failed = (why: string, retryable = false): MotoStartError =>
    new MotoStartError(`moto_server ${why}${output ? `; its output:\n${output.trimEnd()}` : ''}`, retryable);

  const started = await Promise.race([
    new Promise<'spawned'>((resolve) => child.once('spawn', () => resolve('spawned'))),
    spawnError,
  ]);
  if (started instanceof Error) {
    const hint = (started as NodeJS.ErrnoException).code === 'ENOENT' ? ' (is Python moto installed and on PATH?)' : '';
    throw new MotoStartError(`cannot start moto_server${hint}: ${started.message}`, false);
  }
  const pid = child.pid!;
  running.set(pid, child);
  installSafetyNet();

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (exitInfo === undefined) {
        child.kill('SIGTERM');
        const inTime = await Promise.race([exited.then(() => true), sleep(STOP_GRACE_MS).then(() => false)]);
        if (!inTime) {
          child.kill('SIGKILL');
          await exited;
        }
      }
      running.delete(pid);
    })();
    return stopping;
  };

  const deadline = Date.now() + readyTimeoutMs;
  while (!(await answers(endpoint))) {
    // Typically "address already in use": worth another port.
    if (exitInfo !== undefined) throw failed(`exited during start-up (${exitInfo})`, true);
    if (Date.now() > deadline) {
      await stop();
      throw failed(`did not answer on ${endpoint} within ${readyTimeoutMs} ms`);
    }
    await sleep(100);
  }
  return { endpoint, port, pid, stop };
};

/** Starts moto_server on 127.0.0.1 and resolves once it answers HTTP. */
export const startMoto = async (options: StartMotoOptions = {}): Promise<MotoServer> => {
  const readyTimeoutMs = options.readyTimeoutMs ?? 30_000;
  if (options.port !== undefined) return launch(options.port, readyTimeoutMs);
  // A port we picked can be taken by someone else before moto binds it: try a few.
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      return await launch(await freePort(), readyTimeoutMs);
    } catch (err) {
      lastError = err;
      if (!(err instanceof MotoStartError && err.retryable)) throw err;
    }
  }
  throw lastError;
};
