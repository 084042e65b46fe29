/**
 * serverless-offline (through osls) as a child process of `npm start`: the Lambda Invoke API on loopback.
 * Started with the stage's --param values, its output shown once it listens, stopped by PID.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const OFFLINE_READY_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 5_000;

/**
 * The environment of the osls process (and so of the functions it serves): the machine's, less every inherited
 * AWS_* setting (a profile, a real endpoint, real credentials must never reach the function), plus dummy
 * credentials and the local endpoints. STS may have its own endpoint (the tests' STS with signature checking).
 */
export const localAwsEnv = (endpoints: { aws: string; sts?: string }, region: string): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('AWS_')) env[key] = value;
  return {
    ...env,
    AWS_ENDPOINT_URL: endpoints.aws,
    AWS_ENDPOINT_URL_STS: endpoints.sts ?? endpoints.aws,
    AWS_REGION: region,
    AWS_DEFAULT_REGION: region,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_EC2_METADATA_DISABLED: 'true',
    // What Lambda sets for an on-demand function. serverless-offline does not, and Powertools then never reports a
    // cold start (its rule: cold_start only with 'on-demand'): every line said cold_start false, even the first
    // invocation's of a new worker. With it, a worker's first invocation says true, as a new container's does.
    AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
    // Node 20 may run this locally; Lambda runs nodejs24.x. The SDK's "upgrade Node" notice is noise here.
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    SLS_TELEMETRY_DISABLED: '1',
    SLS_NOTIFICATIONS_MODE: 'off',
  };
};

export interface OfflineOptions {
  root: string;
  stage: string;
  params: Record<string, string>;
  env: NodeJS.ProcessEnv;
  /** Each line the functions log once serverless-offline is ready. */
  onLine: (line: string) => void;
}

/**
 * What osls printed before it failed, for a person: without its banner (Environment, Docs) and without the stack
 * trace it appends to an error thrown while resolving serverless.yml (a stage parameter infra/caller-access.cjs
 * refuses, such as an organization grant in grants mode), which buries the one line that says what is wrong.
 */
export const oslsFailure = (output: string): string =>
  output
    .split('\n')
    .filter((line) => !/^\s+at\s/.test(line) && !/^(Environment|Docs|Support|Bugs):\s/.test(line))
    .join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();

const portAnswers = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });

/** Every child we spawned (moto.ts tracks its own), for the 'exit' safety net. */
export const spawned = new Set<ChildProcess>();

export interface Offline {
  child: ChildProcess;
  pid: number;
  exited: Promise<void>;
}

export const startOffline = async (lambdaPort: number, options: OfflineOptions): Promise<Offline> => {
  const { root, stage, params, env } = options;
  const args = [
    join(root, 'node_modules', 'osls', 'bin', 'serverless.js'),
    'offline',
    'start',
    '--stage',
    stage,
    '--host',
    '127.0.0.1',
    '--lambdaPort',
    String(lambdaPort),
    '--noSponsor',
    ...Object.entries(params).flatMap(([key, value]) => ['--param', `${key}=${value}`]),
  ];
  const child = spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'], detached: false });
  if (child.pid === undefined) throw new Error('cannot start serverless-offline');
  spawned.add(child);
  const pid = child.pid;
  let exitInfo: string | undefined;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exitInfo = signal ? `signal ${signal}` : `code ${code}`;
      resolve();
    }),
  );
  // Until it is ready, keep its output for the error message; afterwards show the function's logs.
  let ready = false;
  let early = '';
  const onLine = (line: string): void => {
    if (!ready) early += `${line}\n`;
    else if (line.trim()) options.onLine(line);
  };
  for (const stream of [child.stdout!, child.stderr!]) {
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      lines.forEach(onLine);
    });
  }
  const deadline = Date.now() + OFFLINE_READY_TIMEOUT_MS;
  while (!(await portAnswers(lambdaPort))) {
    if (exitInfo !== undefined) throw new Error(`serverless-offline exited (${exitInfo}):\n${oslsFailure(early)}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(
        `serverless-offline did not listen on ${lambdaPort} within ${OFFLINE_READY_TIMEOUT_MS} ms:\n${oslsFailure(early)}`,
      );
    }
    await sleep(150);
  }
  ready = true;
  return { child, pid, exited };
};

export const stopProcess = async (proc: Offline): Promise<void> => {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill('SIGTERM');
  const inTime = await Promise.race([proc.exited.then(() => true), sleep(STOP_GRACE_MS).then(() => false)]);
  if (!inTime) {
    proc.child.kill('SIGKILL');
    await proc.exited;
  }
};
