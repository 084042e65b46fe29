import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { invokeTransport, TokenBrokerClient } from '@limitrail/token-broker-client';
import type { AwsCredentialIdentity } from '@smithy/types';
import { afterAll, describe, expect, it } from 'vitest';
import type { LocalStack } from '../../local/token-cli';
import { freePort } from '../support/stacks/moto';
import { localAwsEnv, startOffline } from '../support/stacks/offline';

/**
 * The newcomer's path, as docs/callers.md tells it: `npm start -- --port N` (the whole local stack: moto_server with
 * IAM and STS, the LimitRail sandbox, serverless-offline through osls, in `grants` mode) shows a real token request
 * proven by a demo caller role and writes .local/caller.env and the AWS profiles `granted` and `nogrant`; the
 * documented Node and Python programs (examples/local-node.mjs, examples/local_python.py) get a token with those
 * two shell lines, and are refused as `nogrant`; the deployed-stage smoke test (`npm run token -- --stage`) runs the
 * same way; Ctrl-C stops everything; a restart on the same ports writes the same caller.env. Also the client
 * package and `npm run token` against the stack, and refusals of a role without a grant or a request without a proof.
 * The stack's files go to a temporary directory (LOCAL_STACK_FILE), not the checkout's .local/.
 */
const localDir = mkdtempSync(join(tmpdir(), 'broker-local-'));
const stackFile = join(localDir, 'stack.json');
const callerEnvFile = join(localDir, 'caller.env');
const TSX = join('node_modules', '.bin', 'tsx');
const PROVEN_SESSION = 'arn:aws:sts::123456789012:assumed-role/limitrail-demo-caller/npm-start';
const PROFILE_SESSION = 'arn:aws:sts::123456789012:assumed-role/limitrail-demo-caller/your-code';
/** A JWT (what the sandbox issues): never in any output unless asked for. */
const JWT = /eyJ[\w-]{10,}\.[\w-]{10,}\.[\w-]{10,}/;

/** The machine's environment less every AWS_* setting: the programs get theirs from caller.env only. */
const baseEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('AWS_')) env[key] = value;
  return { ...env, FORCE_COLOR: '0', LOCAL_STACK_FILE: stackFile, PYTHONDONTWRITEBYTECODE: '1' };
};

const portIsFree = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });

/** N such that N, N+1 and N+2 are free on loopback (what `--port N` takes). */
const freePortTriple = async (): Promise<number> => {
  for (let attempt = 0; attempt < 20; attempt += 1) {
    const port = await freePort();
    if (port <= 65_533 && (await portIsFree(port + 1)) && (await portIsFree(port + 2))) return port;
  }
  throw new Error('no three free consecutive ports');
};

interface Start {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** `npm start -- ...args` in its own process group, as a terminal runs it; resolves once it printed the stop hint. */
const npmStart = async (...args: string[]): Promise<Start> => {
  const child = spawn('npm', ['start', '--', ...args, '--no-build'], {
    env: baseEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  starts.push(child);
  for (let i = 0; i < 1_200 && !output.includes('Stop with Ctrl-C'); i++) {
    if (child.exitCode !== null) break;
    await sleep(50);
  }
  expect(output, output).toContain('Stop with Ctrl-C');
  return { child, output: () => output, exited };
};

/** Ctrl-C in the terminal: SIGINT to the whole process group (npm, tsx, start.ts). */
const ctrlC = (start: Start): void => {
  process.kill(-start.child.pid!, 'SIGINT');
};

const starts: ChildProcess[] = [];
afterAll(() => {
  for (const child of starts) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
});

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a shell script (the documented lines) from the repository root; its exit code and output. */
const sh = async (script: string, env: NodeJS.ProcessEnv = {}): Promise<Ran> => {
  try {
    const { stdout, stderr } = await promisify(execFile)('sh', ['-c', script], { env: { ...baseEnv(), ...env } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const { code, stdout = '', stderr = '' } = err as { code?: number; stdout?: string; stderr?: string };
    return { code: code ?? -1, stdout, stderr };
  }
};

/** The two lines npm start prints (and docs/callers.md shows), then a command, as a user types them. */
const asDocumented = (profile: string, command: string): Promise<Ran> =>
  sh(`set -a; . "$CALLER_ENV"; set +a\nexport AWS_PROFILE=${profile}\n${command}`, { CALLER_ENV: callerEnvFile });

const NODE_PROGRAM = 'node examples/local-node.mjs';
const PYTHON_PROGRAM = 'PYTHONPATH=clients/python/src python3 examples/local_python.py';

/** Session credentials of a demo role, the way any caller gets them: AssumeRole (here in moto). */
const sessionOf = async (stack: LocalStack, roleArn: string, sessionName: string): Promise<AwsCredentialIdentity> => {
  const sts = new STSClient({
    endpoint: stack.stsEndpoint,
    region: stack.region,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  try {
    const { Credentials: c } = await sts.send(
      new AssumeRoleCommand({ RoleArn: roleArn, RoleSessionName: sessionName }),
    );
    return { accessKeyId: c!.AccessKeyId!, secretAccessKey: c!.SecretAccessKey!, sessionToken: c!.SessionToken! };
  } finally {
    sts.destroy();
  }
};

/** `npm run token -- ...` against this test's stack; its exit code and output. */
const tokenCli = (...args: string[]): Promise<Ran> =>
  sh(`"${TSX}" local/token-cli.ts ${args.map((a) => `'${a}'`).join(' ')}`);

describe('npm start, the newcomer path', () => {
  let port: number;
  let start: Start;
  let stack: LocalStack;
  let lambda: LambdaClient;
  let callerEnv: string;

  it('brings up the local stack on fixed ports (--port) in grants mode and shows a request proven by the demo caller role', async () => {
    port = await freePortTriple();
    start = await npmStart('--port', String(port));
    const output = start.output();
    expect(output).toContain(`identityProof: STS GetCallerIdentity signed as ${PROVEN_SESSION}`);
    expect(output).toMatch(/"token_type": "Bearer"/);
    expect(output).toContain('proven: the broker replayed the proof');
    expect(output).toContain('npm run token -- --scopes');
    expect(output).toContain('--as nogrant');
    expect(output).toContain('npm run revoke -- granted');
    expect(output).toContain(`moto_server on http://127.0.0.1:${port + 1}`);
    expect(output).toContain(`LimitRail sandbox on http://127.0.0.1:${port + 2}`);
    expect(output).toContain(`Lambda API on http://127.0.0.1:${port}`);
    // One readable line for the request (time, caller, client, scopes, source, status), a new container's first
    // invocation marked as a cold start; no raw JSON line and no metrics line unless --json.
    expect(output).toMatch(
      /λ │ \d\d:\d\d:\d\d {2}limitrail-demo-caller\/npm-start {2}limitrail {2}limitrail\.usage\.write {2}endpoint {2}200 \(cold start\)/,
    );
    expect(output).not.toMatch(/λ │ \{/);
    // The hints come last: after the request's line (and its metrics line, which the function prints after its
    // answer), "Stop with Ctrl-C." is the last thing printed.
    const lines = output.trimEnd().split('\n');
    expect(lines.at(-1)).toBe('Stop with Ctrl-C.');
    expect(lines.findIndex((l) => l.includes('limitrail-demo-caller/npm-start'))).toBeLessThan(
      lines.indexOf('Stop with Ctrl-C.'),
    );
    // The two lines to use the written files.
    expect(output).toContain(`set -a; . ${callerEnvFile}; set +a`);
    expect(output).toContain('export AWS_PROFILE=granted');
    // The proof is a credential: neither its signature nor the session's token is ever printed.
    expect(output).not.toMatch(/Signature=|AWS4-HMAC-SHA256|x-amz-security-token/i);
    expect(output).not.toMatch(JWT);

    const text = readFileSync(stackFile, 'utf8');
    stack = JSON.parse(text) as LocalStack;
    expect(stack).toMatchObject({
      callerAuth: 'grants',
      lambdaEndpoint: `http://127.0.0.1:${port}`,
      stsEndpoint: stack.motoEndpoint,
      proofAudience: stack.functions.token,
      callers: {
        granted: 'arn:aws:iam::123456789012:role/limitrail-demo-caller',
        nogrant: 'arn:aws:iam::123456789012:role/limitrail-demo-nogrant',
      },
    });
    expect(text).not.toMatch(/secretAccessKey|sessionToken|AccessKeyId/i);
    // serverless-offline checks no signature on the Invoke API; who calls is what the proof says.
    lambda = new LambdaClient({
      endpoint: stack.lambdaEndpoint,
      region: stack.region,
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
  }, 90_000);

  it('writes caller.env (region, Lambda and STS endpoints, function, audience) and a profile per demo role, credentials readable only by their owner', () => {
    callerEnv = readFileSync(callerEnvFile, 'utf8');
    const vars = Object.fromEntries(
      callerEnv
        .split('\n')
        .filter((l) => /^[A-Z_]+=/.test(l))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    expect(vars).toMatchObject({
      AWS_REGION: 'us-east-1',
      AWS_DEFAULT_REGION: 'us-east-1',
      AWS_ENDPOINT_URL_LAMBDA: `http://127.0.0.1:${port}`,
      AWS_ENDPOINT_URL_STS: `http://127.0.0.1:${port + 1}`,
      AWS_CONFIG_FILE: join(localDir, 'aws', 'config'),
      AWS_SHARED_CREDENTIALS_FILE: join(localDir, 'aws', 'credentials'),
      LIMITRAIL_BROKER_FUNCTION: 'limitrail-token-broker-local-token',
      LIMITRAIL_BROKER_AUDIENCE: 'limitrail-token-broker-local-token',
    });
    expect(readFileSync(vars.AWS_CONFIG_FILE!, 'utf8')).toMatch(/\[profile granted\][^[]*\[profile nogrant\]/);
    const credentials = vars.AWS_SHARED_CREDENTIALS_FILE!;
    expect(readFileSync(credentials, 'utf8')).toMatch(/\[granted\]\naws_access_key_id = \w{16,}\n[\s\S]*\[nogrant\]/);
    expect(statSync(credentials).mode & 0o077).toBe(0);
  });

  it('docs/callers.md shows exactly the Node and Python programs this test runs', () => {
    const doc = readFileSync('docs/callers.md', 'utf8');
    expect(doc).toContain(readFileSync('examples/local-node.mjs', 'utf8').trim());
    expect(doc).toContain(readFileSync('examples/local_python.py', 'utf8').trim());
    expect(doc).toContain('set -a; . .local/caller.env; set +a');
    expect(doc).toContain('export AWS_PROFILE=granted');
    expect(doc).toContain(NODE_PROGRAM);
    expect(doc).toContain(PYTHON_PROGRAM);
  });

  it('the documented Node and Python programs get a token with caller.env and the granted profile', async () => {
    expect(existsSync('clients/node/dist/esm/index.js'), 'the client package is not built: npm run build').toBe(true);
    const node = await asDocumented('granted', NODE_PROGRAM);
    expect(node, node.stderr).toMatchObject({ code: 0 });
    expect(node.stdout).toMatch(/^got a token for limitrail\.usage\.read: \d+ characters, sha256 [0-9a-f]{12}…$/m);
    const python = await asDocumented('granted', `${PYTHON_PROGRAM} limitrail.usage.write`);
    expect(python, python.stderr).toMatchObject({ code: 0 });
    expect(python.stdout).toMatch(/^got a token for limitrail\.usage\.write: \d+ characters, sha256 [0-9a-f]{12}…$/m);
    for (const ran of [node, python]) expect(`${ran.stdout}${ran.stderr}`).not.toMatch(JWT);
    // The broker proved the profile's session (its audit line, as npm start shows it).
    for (let i = 0; i < 40 && !start.output().includes('limitrail-demo-caller/your-code'); i++) await sleep(50);
    expect(start.output()).toMatch(
      /limitrail-demo-caller\/your-code {2}limitrail {2}limitrail\.usage\.read {2}\w+ {2}200/,
    );
  });

  it('the same programs are refused with the nogrant profile: access_denied 403, exit code 1', async () => {
    for (const program of [NODE_PROGRAM, PYTHON_PROGRAM]) {
      const refused = await asDocumented('nogrant', program);
      expect(refused.code, `${program}: ${refused.stdout}${refused.stderr}`).toBe(1);
      expect(refused.stderr).toContain(
        'refused: access_denied (403): caller "arn:aws:sts::123456789012:assumed-role/limitrail-demo-nogrant/your-code" has no grant',
      );
    }
  });

  it('npm run token -- --stage local (the smoke test of a deployed stage) names the caller, scopes and expiry, never the token unless asked', async () => {
    const smoke = await asDocumented(
      'granted',
      `"${TSX}" local/token-cli.ts --stage local --profile nogrant --scopes limitrail.usage.read; echo "exit=$?"; ` +
        `"${TSX}" local/token-cli.ts --stage local --scopes limitrail.usage.read,limitrail.usage.write`,
    );
    expect(smoke.code, smoke.stderr).toBe(0);
    expect(smoke.stdout).toContain(`caller:   ${PROFILE_SESSION}`);
    expect(smoke.stdout).toContain('scopes:   limitrail.usage.read limitrail.usage.write');
    expect(smoke.stdout).toMatch(/expires: {2}\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in \d+ s\)/);
    expect(smoke.stdout).toMatch(/token: {4}\d+ characters, not shown/);
    expect(`${smoke.stdout}${smoke.stderr}`).not.toMatch(JWT);
    // --profile nogrant: the broker's refusal, exit code 1 (as `npm run token` has it).
    expect(smoke.stdout).toContain('caller:   arn:aws:sts::123456789012:assumed-role/limitrail-demo-nogrant/your-code');
    expect(smoke.stdout).toContain('exit=1');
    expect(smoke.stderr).toMatch(/"error": "access_denied"/);

    const token = await asDocumented(
      'granted',
      `"${TSX}" local/token-cli.ts --stage local --scopes limitrail.usage.read --show-token`,
    );
    expect(token.stdout).toMatch(new RegExp(`token: {4}${JWT.source}`));
    const nowhere = await asDocumented(
      'granted',
      `"${TSX}" local/token-cli.ts --stage nosuch --scopes limitrail.usage.read`,
    );
    expect(nowhere.code).toBe(2);
    expect(nowhere.stderr).toContain('No function limitrail-token-broker-nosuch-token in us-east-1');
  }, 60_000);

  it('answers the caller example with proofs of the granted role, including a forced refresh after a 401', async () => {
    const credentials = await sessionOf(stack, stack.callers.granted, 'local-start-test');
    const transport = invokeTransport(stack.functions.token!, { lambda, credentials, stsUrl: stack.stsEndpoint });
    const broker = new TokenBrokerClient(transport);
    const token = await broker.token(['limitrail.usage.read']);
    expect(token).toMatch(/^eyJ/);
    expect(await broker.token(['limitrail.usage.read'])).toBe(token);
    const fresh = await broker.tokenAfter401(['limitrail.usage.read'], token);
    expect(fresh).not.toBe(token);
    // limitrail.accounts.read is configured for the client but not granted to this role.
    await expect(broker.token(['limitrail.accounts.read'])).rejects.toMatchObject({
      error: 'access_denied',
      status: 403,
    });
  });

  it('refuses a role without a grant, and a request without a proof, with access_denied 403', async () => {
    const credentials = await sessionOf(stack, stack.callers.nogrant, 'local-start-test');
    const broker = new TokenBrokerClient(
      invokeTransport(stack.functions.token!, { lambda, credentials, stsUrl: stack.stsEndpoint }),
    );
    await expect(broker.token(['limitrail.usage.read'])).rejects.toMatchObject({ error: 'access_denied', status: 403 });

    const out = await lambda.send(
      new InvokeCommand({
        FunctionName: stack.functions.token,
        Payload: JSON.stringify({ scopes: ['limitrail.usage.read'] }),
      }),
    );
    expect(JSON.parse(new TextDecoder().decode(out.Payload))).toMatchObject({ error: 'access_denied', status: 403 });
  });

  it('npm run token signs a fresh proof per run: the granted role gets a token, --as nogrant is refused', async () => {
    const granted = await tokenCli('--scopes', 'limitrail.usage.write');
    expect(granted.stderr).toContain('as arn:aws:sts::123456789012:assumed-role/limitrail-demo-caller/npm-run-token');
    expect(granted.code).toBe(0);
    expect(JSON.parse(granted.stdout)).toMatchObject({ token_type: 'Bearer', scope: 'limitrail.usage.write' });

    const refused = await tokenCli('--scopes', 'limitrail.usage.read', '--as', 'nogrant');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('assumed-role/limitrail-demo-nogrant/npm-run-token');
    expect(refused.stderr).toMatch(/"error": "access_denied"/);
    expect(refused.stderr).toMatch(/"status": 403/);
    expect(`${granted.stdout}${granted.stderr}${refused.stdout}${refused.stderr}`).not.toMatch(
      /Signature=|AWS4-HMAC-SHA256/i,
    );
  });

  it('serves the private_key_jwt client (a KMS-signed assertion the sandbox verifies) to the jwt role, and prints its JWK Set', async () => {
    expect(start.output()).toContain('No secret at all: npm run token -- --as jwt --scopes limitrail.usage.read');
    const jwt = await tokenCli('--as', 'jwt', '--scopes', 'limitrail.usage.read');
    expect(jwt.code, jwt.stderr).toBe(0);
    expect(JSON.parse(jwt.stdout)).toMatchObject({ token_type: 'Bearer', client: 'limitrail-jwt' });
    for (let i = 0; i < 40 && !start.output().includes('client=lr_jwt_'); i++) await sleep(50);
    expect(start.output()).toMatch(
      /sandbox │ POST \/connect\/token 200 client=lr_jwt_\w+ scope="limitrail\.usage\.read"/,
    );
    const jwks = await sh(`"${TSX}" local/jwks.ts --local`);
    expect(jwks.code, jwks.stderr).toBe(0);
    expect(JSON.parse(jwks.stdout)).toMatchObject({ keys: [{ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' }] });
    expect(stack.signingKeyIds).toHaveLength(1);
  });

  it('npm run revoke -- granted: the broker refuses the role within CALLERS_MAX_AGE_SEC, with no restart; --lift serves it again', async () => {
    expect(stack.callersParameter).toEqual({ name: '/limitrail-token-broker/local/callers', maxAgeSec: 5 });
    const revoke = await sh(`"${TSX}" local/revoke-cli.ts granted`);
    expect(revoke, revoke.stderr).toMatchObject({ code: 0 });
    expect(revoke.stdout).toContain(
      'revoked arn:aws:iam::123456789012:role/limitrail-demo-caller in /limitrail-token-broker/local/callers',
    );
    expect(revoke.stdout).toMatch(
      /after \d+\.\d s, as granted \(npm-run-token\): access_denied 403: caller ".*" is revoked/,
    );
    const refused = await tokenCli('--scopes', 'limitrail.usage.write');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /"error_description": "caller \\"arn:aws:sts::123456789012:assumed-role\/limitrail-demo-caller\/npm-run-token\\" is revoked/,
    );
    expect(start.output()).toContain('403 access_denied (caller_revoked)');

    const lift = await sh(`"${TSX}" local/revoke-cli.ts granted --lift`);
    expect(lift, lift.stderr).toMatchObject({ code: 0 });
    expect(lift.stdout).toContain('revoked now: nobody');
    expect(lift.stdout).toMatch(/after \d+\.\d s, as granted \(npm-run-token\): a token/);
    expect((await tokenCli('--scopes', 'limitrail.usage.write')).code).toBe(0);
  }, 60_000);

  it('stops everything on Ctrl-C, leaving no process behind', async () => {
    lambda?.destroy();
    ctrlC(start);
    expect(await start.exited).toBe(0);
    expect(start.output()).toContain('nothing left running');
    expect(alive(stack.pids.moto)).toBe(false);
    expect(alive(stack.pids.offline)).toBe(false);
    expect(existsSync(stackFile)).toBe(false);
  }, 30_000);

  it('restarts on the same ports with the same caller.env, and the programs work again with the rewritten profiles; --json shows the raw lines', async () => {
    const again = await npmStart('--port', String(port), '--json');
    try {
      expect(readFileSync(callerEnvFile, 'utf8')).toBe(callerEnv);
      const node = await asDocumented('granted', NODE_PROGRAM);
      expect(node, node.stderr).toMatchObject({ code: 0 });
      // --json: the function's own lines, the first invocation of the new container with cold_start true.
      const issued = again
        .output()
        .split('\n')
        .filter((l) => l.includes('"audit":"issued"'))
        .map((l) => JSON.parse(l.slice(l.indexOf('{'))) as { caller: string; cold_start: boolean });
      expect(issued[0]).toMatchObject({ caller: PROVEN_SESSION, cold_start: true });
      expect(again.output()).toMatch(/λ │ \{"_aws":/);
      const lines = again.output().split('\n');
      expect(lines.findIndex((l) => l.includes('"_aws"'))).toBeLessThan(lines.indexOf('Stop with Ctrl-C.'));
    } finally {
      ctrlC(again);
      expect(await again.exited, again.output().slice(-3000)).toBe(0);
    }
    expect(again.output()).toContain('nothing left running');
  }, 90_000);
});

describe('a configuration error at start', () => {
  it('is shown as its message, without the stack trace osls appends (an organization grant in grants mode)', async () => {
    const lambdaPort = await freePort();
    const failure = await startOffline(lambdaPort, {
      root: process.cwd(),
      stage: 'local',
      params: {
        callerAuth: 'grants',
        brokerCallers: JSON.stringify([
          { principal: 'o-abcdefghij', client: 'limitrail', scopes: ['limitrail.usage.read'] },
        ]),
      },
      env: localAwsEnv({ aws: 'http://127.0.0.1:9' }, 'us-east-1'),
      onLine: () => undefined,
    }).then(
      () => new Error('serverless-offline started'),
      (err: unknown) => err as Error,
    );
    expect(failure.message).toMatch(/^serverless-offline exited \(code 1\):\nError:\n/);
    expect(failure.message).toContain('"o-abcdefghij" is an organization id, which callerAuth "grants" refuses');
    expect(failure.message).not.toMatch(/\n\s+at /);
    expect(failure.message).not.toContain('node_modules/osls');
  }, 30_000);
});
