/**
 * `npm start`: the whole broker on this machine, on loopback, with nothing to configure.
 *
 *   npm start [-- --port N] [--json] [--no-build]
 *
 *   1. builds dist/ (scripts/build.mjs)
 *   2. starts moto_server (DynamoDB, Secrets Manager, KMS, IAM, STS) and the LimitRail sandbox (token endpoint)
 *   3. creates the table, the client secret and the KMS key in moto (test/support/stacks/aws-setup.ts), three caller
 *      roles in moto's IAM, one granted scopes, one not, and one granted the private_key_jwt client below
 *      (test/support/stacks/demo-callers.ts), and the callers parameter in moto's SSM holding those grants and no
 *      revocation (test/support/stacks/callers-parameter.ts); and a second upstream client, `limitrail-jwt`, that
 *      authenticates with private_key_jwt: a signing key in moto's KMS, its JWK Set registered with the sandbox, which
 *      verifies every assertion (test/support/stacks/key-client.ts)
 *   4. runs serverless-offline (osls, --stage local, callerAuth=grants, callersParameter: that parameter, read every
 *      5 s): the Lambda Invoke API on 127.0.0.1; `npm run revoke` (local/revoke-cli.ts) changes the parameter
 *   5. writes .local/caller.env and the AWS profiles `granted`, `nogrant` and `jwt` (.local/aws/config, credentials:
 *      sessions of the three roles), with which your own code calls the local broker (local/caller-files.ts)
 *   6. asks the token function for a token once, like a real caller: as a session of the granted role
 *      (AssumeRole in moto), with an identity proof signed by it; prints the exchange, never the proof
 *
 * `--port N` fixes the ports: the Lambda API on N, moto_server (the AWS APIs, STS) on N+1, the sandbox on N+2, so
 * that .local/caller.env is the same after a restart (default: free ports, new with each run). The functions' output
 * is one line per request (local/console.ts); `--json` shows their JSON log lines as they are.
 *
 * Writes the endpoints to .local/stack.json (for `npm run token`) and stays up until Ctrl-C, then stops
 * every child it started, by PID, and checks that none is left.
 *
 * How the function gets its environment under serverless-offline 14: each handler runs in a worker
 * thread whose env is (a) every AWS_* variable of the osls process, then (b) AWS_REGION etc. derived
 * from provider.region, then (c) provider.environment / function environment from serverless.yml,
 * then IS_OFFLINE=true. Nothing else from process.env reaches it (unless --localEnvironment). So the
 * broker's own settings go in as `--param` values of the `local` stage, which serverless.yml turns
 * into TOKEN_TABLE_NAME / BROKER_CLIENTS / TOKEN_KMS_KEY_ID, and the AWS endpoint and dummy
 * credentials go in as AWS_* variables of the osls process; AWS_ENDPOINT_URL_STS (moto) is also the only STS
 * origin the broker replays identity proofs to.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';

import { setupLocalAws } from '../test/support/stacks/aws-setup';
import { putCallersParameter } from '../test/support/stacks/callers-parameter';
import { assumeDemoCaller, DEMO_ROLES, demoGrants, ensureDemoCallers } from '../test/support/stacks/demo-callers';
import { DEMO_KEY_CLIENT, ensureKeyClient } from '../test/support/stacks/key-client';
import { freePort, type MotoServer, startMoto } from '../test/support/stacks/moto';
import { localAwsEnv, type Offline, spawned, startOffline, stopProcess } from '../test/support/stacks/offline';
import { type Sandbox, startSandbox } from '../test/support/stacks/sandbox';
import { DEMO_PROFILES, writeCallerFiles } from './caller-files';
import { consoleLine, isMetricsLine } from './console';
import { isAlive, isOAuthError, type LocalStack, readStack, redactAnswer, requestAs, STACK_FILE } from './token-cli';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SERVICE = 'limitrail-token-broker';
const STAGE = 'local';
const REGION = 'us-east-1';
const TABLE_NAME = `${SERVICE}-local-tokens`;
const SECRET_ID = `${SERVICE}/local/limitrail`;
const KMS_ALIAS = `alias/${SERVICE}-local`;
const TOKEN_FUNCTION = `${SERVICE}-${STAGE}-token`;
const DEMO_EVENT = { scopes: ['limitrail.usage.write'] };
/** Where the local broker reads its callers (moto's SSM), and how often: a revocation takes at most this long. */
const CALLERS_PARAMETER = { name: `/${SERVICE}/${STAGE}/callers`, maxAgeSec: 5 };

/** The session name of the demo roles' sessions in .local/aws/credentials: what the broker's audit lines show. */
const PROFILE_SESSION = 'your-code';
/** How long to wait for the demo request's metrics line before printing the hints after it. */
const METRICS_LINE_WAIT_MS = 3_000;

const say = (line = ''): void => console.log(line);
const step = (line: string): void => console.log(`• ${line}`);

const USAGE = `usage: npm start [-- --port N] [--json] [--no-build]
  --port N    fixed ports: the Lambda API on N, moto_server (AWS APIs, STS) on N+1, the LimitRail sandbox on N+2,
              so that .local/caller.env stays the same across restarts (default: free ports, new with each run)
  --json      show the functions' JSON log lines as they are, instead of one line per request
  --no-build  use dist/ as it is`;

class UsageError extends Error {}

interface Options {
  /** Lambda API, moto, sandbox; undefined: free ports. */
  ports?: { lambda: number; moto: number; sandbox: number };
  json: boolean;
  build: boolean;
  help: boolean;
}

const parseStartArgs = (argv: string[]): Options => {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        port: { type: 'string' },
        json: { type: 'boolean', default: false },
        'no-build': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const options: Options = { json: values.json ?? false, build: !values['no-build'], help: values.help ?? false };
  if (values.port !== undefined) {
    const port = Number(values.port);
    if (!/^\d+$/.test(values.port) || port < 1024 || port > 65_533) {
      throw new UsageError('--port must be a whole number from 1024 to 65533 (it also takes the next two ports)');
    }
    options.ports = { lambda: port, moto: port + 1, sandbox: port + 2 };
  }
  return options;
};

/** Whether nothing listens on this loopback port (we bind it and let go at once). */
const portIsFree = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });

const checkPortsFree = async (ports: NonNullable<Options['ports']>): Promise<void> => {
  const names = { lambda: 'the Lambda API', moto: 'moto_server', sandbox: 'the LimitRail sandbox' } as const;
  for (const [key, port] of Object.entries(ports) as [keyof typeof names, number][]) {
    if (!(await portIsFree(port))) {
      throw new Error(
        `port ${port} (${names[key]}) is in use on 127.0.0.1: is another npm start running? Choose another --port ` +
          '(it takes three: N, N+1, N+2).',
      );
    }
  }
};

/** A path as a person types it here: relative when under the current directory, shell-quoted when it needs it. */
const shown = (path: string): string => {
  const rel = relative(process.cwd(), path);
  const display = rel && !rel.startsWith('..') ? rel : path;
  return /^[\w@%+=:,./-]+$/.test(display) ? display : `'${display.replaceAll("'", `'\\''`)}'`;
};

const build = async (): Promise<void> => {
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [join(ROOT, 'scripts', 'build.mjs')], { cwd: ROOT });
    const bundles = stdout
      .split('\n')
      .filter((l) => l.startsWith('dist/'))
      .map((l) => l.trim().split(/\s+/))
      .map(([file, , kib]) => `${file} ${kib} KiB`);
    step(`built ${bundles.join(', ')}`);
  } catch (err) {
    const { stdout = '', stderr = '' } = err as { stdout?: string; stderr?: string };
    throw new Error(`build failed:\n${`${stdout}${stderr}`.trim()}`);
  }
};

/**
 * Our remaining child processes according to ps. Not counted: the ps itself, and tsx's esbuild
 * service (the TypeScript loader's helper; it reads our stdin pipe and ends with us).
 */
const childProcesses = (): string[] => {
  try {
    return execFileSync('ps', ['-eo', 'pid=,ppid=,args='], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => {
        const [, ppid, command, ...rest] = l.split(/\s+/);
        const isEsbuildService = /esbuild$/.test(command ?? '') && rest.some((a) => a.startsWith('--service'));
        return Number(ppid) === process.pid && command !== 'ps' && !isEsbuildService;
      });
  } catch {
    return [];
  }
};

/**
 * The processes that launched us: our parent, up to and including npm (`npm start` runs
 * npm -> sh -c `exec node --import tsx` -> this; run by hand, `tsx local/start.ts` puts tsx between). A signal sent
 * to npm alone (not to the whole process group, as Ctrl-C does) may end it without us hearing anything: we would
 * live on as orphans with moto and serverless-offline. So: stop when any of them is gone.
 *
 * Why `node --import tsx` and not the tsx command: tsx relays a Ctrl-C to its child and, when the child does not
 * confirm within 30 ms (a busy machine), sends SIGKILL: this process would die without stopping moto and
 * serverless-offline, and `npm start` end with 130 instead of a clean stop.
 */
const launchers = (): number[] => {
  const chain: number[] = [];
  let pid = process.ppid;
  for (let depth = 0; depth < 4 && pid > 1; depth += 1) {
    chain.push(pid);
    let line = '';
    try {
      line = execFileSync('ps', ['-o', 'ppid=,args=', '-p', String(pid)], { encoding: 'utf8' }).trim();
    } catch {
      break;
    }
    const [, ppid, args = ''] = /^(\d+)\s+(.*)$/.exec(line) ?? [];
    if (!ppid || /(^|[\s/])npm(\s|$)|npm-cli\.js/.test(args)) break;
    pid = Number(ppid);
  }
  return chain;
};

const watchLaunchers = (onGone: () => void): void => {
  const watched = launchers();
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid !== parent || watched.some((pid) => !isAlive(pid))) {
      clearInterval(timer);
      onGone();
    }
  }, 1_000);
  timer.unref();
};

const main = async (): Promise<void> => {
  const startedMs = Date.now();
  let options: Options;
  try {
    options = parseStartArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`${err.message}\n${USAGE}`);
    process.exit(2);
  }
  if (options.help) {
    say(USAGE);
    return;
  }
  // One stack per checkout: a second one would overwrite .local/stack.json and remove it on exit.
  const running = await readStack();
  if (running && running.pid !== process.pid && isAlive(running.pid)) {
    console.error(`The local stack is already running (pid ${running.pid}, Lambda API ${running.lambdaEndpoint}).`);
    console.error('Use it (npm run token -- --scopes ...) or stop it first (Ctrl-C in its terminal).');
    process.exit(1);
  }
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  let moto: MotoServer | undefined;
  let sandbox: Sandbox | undefined;
  let offline: Offline | undefined;
  let stopping: Promise<void> | undefined;
  let firstSignalMs = 0;

  // Safety net for crashes: never leave serverless-offline behind (moto.ts has its own).
  process.on('exit', () => {
    for (const child of spawned) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  const stopAll = async (): Promise<boolean> => {
    const stopped: string[] = [];
    if (offline) {
      await stopProcess(offline);
      stopped.push(`serverless-offline (pid ${offline.pid})`);
    }
    if (moto) {
      await moto.stop();
      stopped.push(`moto (pid ${moto.pid})`);
    }
    if (sandbox) {
      await sandbox.stop();
      stopped.push('sandbox');
    }
    await rm(STACK_FILE, { force: true });
    const pids = [offline?.pid, moto?.pid].filter((p): p is number => p !== undefined);
    const survivors = [...pids.filter(isAlive).map((p) => `pid ${p}`), ...childProcesses()];
    if (stopped.length > 0) step(`stopped ${stopped.join(', ')}`);
    if (survivors.length > 0) {
      console.error(`still running: ${survivors.join('; ')}`);
      return false;
    }
    step('nothing left running');
    return true;
  };

  const requestStop = (why: string): void => {
    if (stopping) return;
    firstSignalMs = Date.now();
    say();
    step(`${why}: stopping…`);
    stopping = stopAll().then((clean) => process.exit(clean ? 0 : 1));
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    // Ctrl-C reaches us twice (from the terminal and relayed by npm): only a later one means "now".
    if (stopping && Date.now() - firstSignalMs > 2_000) {
      if (offline) offline.child.kill('SIGKILL');
      if (moto) process.kill(moto.pid, 'SIGKILL');
      process.exit(130);
    }
    requestStop(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  watchLaunchers(() => requestStop('npm went away'));

  // The functions' output (local/console.ts), and the EMF metrics lines counted: the hints wait for the demo's.
  let metricsLines = 0;
  const onMetricsLine: Array<() => void> = [];
  const showFunctionLine = (line: string): void => {
    if (isMetricsLine(line)) {
      metricsLines += 1;
      for (const wake of onMetricsLine.splice(0)) wake();
    }
    const text = consoleLine(line, { json: options.json });
    if (text !== undefined) say(`  λ │ ${text}`);
  };
  const metricsLineAfter = (seen: number): Promise<void> =>
    new Promise((resolve) => {
      if (metricsLines > seen) return resolve();
      const timer = setTimeout(resolve, METRICS_LINE_WAIT_MS);
      onMetricsLine.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });

  try {
    if (options.ports) await checkPortsFree(options.ports);
    // `--no-build`: use dist/ as it is (the test suite has just built it, and other tests read it).
    if (options.build) await build();
    const [startedMoto, startedSandbox] = await Promise.allSettled([
      startMoto(options.ports ? { port: options.ports.moto } : {}),
      startSandbox({ port: options.ports?.sandbox, log: (l) => say(`  sandbox │ ${l}`) }),
    ]);
    // Keep whatever did start, so that stopAll() stops it.
    if (startedMoto.status === 'fulfilled') moto = startedMoto.value;
    if (startedSandbox.status === 'fulfilled') sandbox = startedSandbox.value;
    if (startedMoto.status === 'rejected') throw startedMoto.reason;
    if (startedSandbox.status === 'rejected') throw startedSandbox.reason;
    moto = startedMoto.value;
    sandbox = startedSandbox.value;
    step(`moto_server on ${moto.endpoint} (pid ${moto.pid}); LimitRail sandbox on ${sandbox.url}`);
    const client = sandbox.clients[0];
    if (!client) throw new Error('the sandbox has no client');

    const [aws, callers, keyClient] = await Promise.all([
      setupLocalAws({
        endpoint: moto.endpoint,
        region: REGION,
        tableName: TABLE_NAME,
        secretId: SECRET_ID,
        secretValue: { client_id: client.clientId, client_secret: client.clientSecret },
        kmsKeyAlias: KMS_ALIAS,
      }),
      ensureDemoCallers(moto.endpoint, REGION),
      ensureKeyClient({
        endpoint: moto.endpoint,
        region: REGION,
        sandbox,
        clientId: DEMO_KEY_CLIENT.clientId,
        alias: DEMO_KEY_CLIENT.alias,
      }),
    ]);
    step(`created table ${aws.tableName}, secret ${SECRET_ID} and KMS key ${KMS_ALIAS} in moto`);
    step(
      `created caller roles ${DEMO_ROLES.granted} (granted), ${DEMO_ROLES.nogrant} (no grant) and ${DEMO_ROLES.jwt} ` +
        `(granted ${DEMO_KEY_CLIENT.name}) in moto's IAM`,
    );
    step(
      `created signing key ${DEMO_KEY_CLIENT.alias} in moto's KMS for client ${DEMO_KEY_CLIENT.name} (private_key_jwt); ` +
        'the sandbox verifies its assertions with the published JWK Set',
    );
    await putCallersParameter(
      { endpoint: moto.endpoint, region: REGION, name: CALLERS_PARAMETER.name },
      { callers: demoGrants(callers, DEMO_KEY_CLIENT.name), revoked: [] },
    );
    step(
      `created the callers parameter ${CALLERS_PARAMETER.name} in moto's SSM (the grants of ${DEMO_ROLES.granted} ` +
        `and ${DEMO_ROLES.jwt}, nobody revoked), read every ${CALLERS_PARAMETER.maxAgeSec} s`,
    );

    const lambdaPort = options.ports?.lambda ?? (await freePort());
    offline = await startOffline(lambdaPort, {
      root: ROOT,
      stage: STAGE,
      params: {
        region: REGION,
        tokenTableName: aws.tableName,
        tokenKmsKeyId: aws.kmsKeyId,
        limitrailSecret: SECRET_ID,
        limitrailTokenUrl: sandbox.tokenUrl,
        limitrailClientId: client.clientId,
        callerAuth: 'grants',
        // The stage's template client (limitrail, client_secret_post), and the private_key_jwt one beside it.
        brokerClients: JSON.stringify({
          limitrail: {
            secretId: SECRET_ID,
            tokenUrl: sandbox.tokenUrl,
            clientId: client.clientId,
            scopes: client.scopes,
          },
          [DEMO_KEY_CLIENT.name]: keyClient.config,
        }),
        callersParameter: CALLERS_PARAMETER.name,
        callersMaxAgeSec: String(CALLERS_PARAMETER.maxAgeSec),
      },
      env: localAwsEnv({ aws: moto.endpoint }, REGION),
      onLine: showFunctionLine,
    });
    const lambdaEndpoint = `http://127.0.0.1:${lambdaPort}`;
    step(`serverless-offline Lambda API on ${lambdaEndpoint} (pid ${offline.pid})`);

    const stack: LocalStack = {
      startedAt: new Date().toISOString(),
      pid: process.pid,
      region: REGION,
      stage: STAGE,
      lambdaEndpoint,
      functions: { token: TOKEN_FUNCTION },
      motoEndpoint: moto.endpoint,
      callerAuth: 'grants',
      stsEndpoint: moto.endpoint,
      proofAudience: TOKEN_FUNCTION,
      callers,
      callersParameter: CALLERS_PARAMETER,
      sandbox: { url: sandbox.url, tokenUrl: sandbox.tokenUrl, clientId: client.clientId },
      tableName: aws.tableName,
      secretId: SECRET_ID,
      kmsKeyId: aws.kmsKeyId,
      signingKeyIds: [keyClient.keyArn],
      pids: { offline: offline.pid, moto: moto.pid },
    };
    await mkdir(dirname(STACK_FILE), { recursive: true });
    await writeFile(STACK_FILE, `${JSON.stringify(stack, null, 2)}\n`);

    // Your own code's way in: caller.env and a profile per demo role, with sessions assumed in moto.
    const assume = (roleArn: string) =>
      assumeDemoCaller({ stsEndpoint: moto!.endpoint, region: REGION, roleArn, sessionName: PROFILE_SESSION });
    const [granted, nogrant, jwt] = await Promise.all([
      assume(callers.granted),
      assume(callers.nogrant),
      assume(callers.jwt),
    ]);
    const files = await writeCallerFiles(
      dirname(STACK_FILE),
      {
        region: REGION,
        lambdaEndpoint,
        stsEndpoint: stack.stsEndpoint,
        functionName: TOKEN_FUNCTION,
        audience: stack.proofAudience,
      },
      { granted, nogrant, jwt },
    );
    step(
      `wrote ${shown(files.envFile)} and the AWS profiles ${Object.values(DEMO_PROFILES).join(', ')} ` +
        `(${shown(files.configFile)}, ${shown(files.credentialsFile)})`,
    );
    step(`ready in ${((Date.now() - startedMs) / 1000).toFixed(1)} s; endpoints in ${shown(STACK_FILE)}`);

    say();
    const metricsBefore = metricsLines;
    const { answer, functionError } = await requestAs(stack, {
      as: 'granted',
      event: DEMO_EVENT,
      sessionName: 'npm-start',
      onSigned: (arn) => {
        say(`→ Invoke ${TOKEN_FUNCTION}  ${JSON.stringify({ ...DEMO_EVENT, identityProof: '…' })}`);
        say(`  identityProof: STS GetCallerIdentity signed as ${arn}`);
        say(`                 for audience ${TOKEN_FUNCTION} (a credential for 5 minutes: not shown)`);
      },
    });
    const body = JSON.stringify(redactAnswer(answer), null, 2).replaceAll('\n', '\n  ');
    say(`← ${functionError ? `function error (${functionError}) ` : ''}${body}`);
    if (functionError || isOAuthError(answer)) say('  (the function answered an error: see the λ lines above)');
    else say(`  proven: the broker replayed the proof to STS (moto) and found ${DEMO_ROLES.granted}'s grant`);
    // The function's last line (its metrics) comes a moment after its answer: the hints come after it.
    await metricsLineAfter(metricsBefore);
    say();
    say('Ask for another:  npm run token -- --scopes limitrail.usage.read,limitrail.usage.write');
    say('See a refusal:    npm run token -- --scopes limitrail.usage.read --as nogrant');
    say(
      `Revoke a caller:  npm run revoke -- granted   (refused within ${CALLERS_PARAMETER.maxAgeSec} s, no restart; ` +
        'undo: npm run revoke -- granted --lift)',
    );
    say(
      'No secret at all: npm run token -- --as jwt --scopes limitrail.usage.read' +
        `   (client ${DEMO_KEY_CLIENT.name}: private_key_jwt, signed by KMS)`,
    );
    say('Its JWK Set:      npm run jwks -- --local');
    say('From your own code (docs/callers.md, "Call the local broker from your own code"):');
    say(`  set -a; . ${shown(files.envFile)}; set +a`);
    say(
      `  export AWS_PROFILE=${DEMO_PROFILES.granted}   # or ${DEMO_PROFILES.nogrant}; then node examples/local-node.mjs`,
    );
    if (!options.ports) say('  (the ports change with each run: npm start -- --port 4566 keeps them, and the file)');
    say('Stop with Ctrl-C.');
  } catch (err) {
    if (stopping) return;
    console.error(`✗ ${err instanceof Error ? err.message : String(err)}`);
    firstSignalMs = Date.now();
    stopping = stopAll().then(() => process.exit(1));
  }
};

// Anything main() did not handle: its message, not a stack trace.
await main().catch((err: unknown) => {
  console.error(`✗ ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
