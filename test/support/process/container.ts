import { type ChildProcess, fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';

/** A Lambda container as its own OS process (own memory cache), running the built bundle of a function. */
export interface Container {
  invoke(event: unknown): Promise<unknown>;
  /** Everything the container wrote to stdout and stderr: its logs. */
  logs(): string;
  stop(): Promise<void>;
  /** SIGKILL: the container dies mid-invocation, as a Lambda sandbox can. */
  kill(): Promise<void>;
  readonly pid: number;
  /** process.version inside the container, as it reported when ready. */
  readonly nodeVersion: string;
  /** process.arch inside the container (arm64 under emulation), as it reported when ready. */
  readonly arch: string;
}

export interface ContainerOptions {
  /** The node binary to run the bundle on (node-runtimes.ts); this process's by default. */
  execPath?: string;
  /** Arguments before the script (node-runtimes.ts: qemu's and the arm64 binary's path for the emulated Node). */
  execArgv?: string[];
}

export const startContainer = async (
  fn: string,
  env: Record<string, string>,
  options: ContainerOptions = {},
): Promise<Container> => {
  const bundle = resolve('dist', fn, 'handler.js');
  const child: ChildProcess = fork(resolve('test/support/process/container-main.cjs'), [bundle], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    ...(options.execPath ? { execPath: options.execPath } : {}),
    ...(options.execArgv ? { execArgv: options.execArgv } : {}),
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const pending = new Map<string, (value: unknown) => void>();
  const signal = async (name: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((done) => child.once('exit', done));
    child.kill(name);
    await exited;
  };
  child.on('exit', () => {
    for (const settle of pending.values()) settle({ thrown: 'container died' });
    pending.clear();
  });
  let nodeVersion = '';
  let arch = '';
  await new Promise<void>((ready, failed) => {
    child.once('error', failed);
    child.once('exit', (code) => failed(new Error(`container exited with ${code}: ${output}`)));
    child.on(
      'message',
      (msg: { ready?: boolean; version?: string; arch?: string; id?: string; result?: unknown; thrown?: string }) => {
        if (msg.ready) {
          nodeVersion = msg.version ?? '';
          arch = msg.arch ?? '';
          return ready();
        }
        const settle = msg.id ? pending.get(msg.id) : undefined;
        if (settle) {
          pending.delete(msg.id!);
          settle(msg.thrown ? { thrown: msg.thrown } : msg.result);
        }
      },
    );
  });
  return {
    invoke: (event) =>
      new Promise((settle) => {
        const id = randomUUID();
        pending.set(id, settle);
        child.send({ id, event });
      }),
    pid: child.pid!,
    nodeVersion,
    arch,
    logs: () => output,
    stop: () => signal('SIGTERM'),
    kill: () => signal('SIGKILL'),
  };
};
