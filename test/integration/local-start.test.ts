import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
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

/**
 * The README's first command, `npm start`, as a new user runs it: the whole local stack (moto_server with IAM and
 * STS, the LimitRail sandbox, serverless-offline through osls) in `grants` mode, a real token request proven by a
 * demo caller role, and a clean stop on Ctrl-C. The client package (@limitrail/token-broker-client) and `npm run token` then
 * get tokens from it over the Lambda Invoke API with proofs signed by session credentials from moto's AssumeRole;
 * a role without a grant, and a request without a proof, are refused.
 */
const stackFile = join(mkdtempSync(join(tmpdir(), 'broker-local-')), 'stack.json');
const TSX = join('node_modules', '.bin', 'tsx');
const PROVEN_SESSION = 'arn:aws:sts::123456789012:assumed-role/limitrail-demo-caller/npm-start';
let start: ChildProcess | undefined;
let output = '';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

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
const tokenCli = async (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
  try {
    const { stdout, stderr } = await promisify(execFile)(TSX, ['local/token-cli.ts', ...args], {
      env: { ...process.env, LOCAL_STACK_FILE: stackFile },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const { code, stdout = '', stderr = '' } = err as { code?: number; stdout?: string; stderr?: string };
    return { code: code ?? -1, stdout, stderr };
  }
};

afterAll(() => {
  if (start && start.exitCode === null) start.kill('SIGKILL');
});

describe('npm start', () => {
  let stack: LocalStack;
  let lambda: LambdaClient;

  it('brings up the local stack in grants mode and shows a request proven by the demo caller role', async () => {
    start = spawn(TSX, ['local/start.ts', '--no-build'], {
      env: { ...process.env, LOCAL_STACK_FILE: stackFile, FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    start.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    start.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    for (let i = 0; i < 600 && !output.includes('Stop with Ctrl-C'); i++) {
      if (start.exitCode !== null) break;
      await sleep(50);
    }
    expect(output).toContain('Stop with Ctrl-C');
    expect(output).toContain(`identityProof: STS GetCallerIdentity signed as ${PROVEN_SESSION}`);
    expect(output).toMatch(/"token_type": "Bearer"/);
    expect(output).toContain('proven: the broker replayed the proof');
    expect(output).toContain('npm run token -- --scopes');
    expect(output).toContain('--as nogrant');
    // The broker's audit line names the principal it proved (the function's logs may trail the answer a little).
    const audited = new RegExp(`λ .*"audit":"issued".*${PROVEN_SESSION.replaceAll('/', '\\/')}`);
    for (let i = 0; i < 40 && !audited.test(output); i++) await sleep(50);
    expect(output).toMatch(audited);
    // The proof is a credential: neither its signature nor the session's token is ever printed.
    expect(output).not.toMatch(/Signature=|AWS4-HMAC-SHA256|x-amz-security-token/i);

    const text = readFileSync(stackFile, 'utf8');
    stack = JSON.parse(text) as LocalStack;
    expect(stack).toMatchObject({
      callerAuth: 'grants',
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

  it('stops everything on Ctrl-C, leaving no process behind', async () => {
    lambda?.destroy();
    const exited = new Promise<number | null>((done) => start!.once('exit', (code) => done(code)));
    start!.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(output).toContain('nothing left running');
    expect(alive(stack.pids.moto)).toBe(false);
    expect(alive(stack.pids.offline)).toBe(false);
    expect(existsSync(stackFile)).toBe(false);
  }, 30_000);
});
