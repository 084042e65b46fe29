import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { afterAll, describe, expect, it } from 'vitest';
import { TokenBrokerClient, invokeTransport } from '../../examples/caller';
import type { LocalStack } from '../../local/token-cli';

/**
 * The README's first command, `npm start`, as a new user runs it: the whole local stack (moto_server, the
 * LimitRail sandbox, serverless-offline through osls), a real token request, and a clean stop on Ctrl-C.
 * The caller example (examples/caller.ts) then gets tokens from it over the Lambda Invoke API.
 */
const stackFile = join(mkdtempSync(join(tmpdir(), 'broker-local-')), 'stack.json');
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

afterAll(() => {
  if (start && start.exitCode === null) start.kill('SIGKILL');
});

describe('npm start', () => {
  let stack: LocalStack;

  it('brings up the local stack and shows a real token request', async () => {
    start = spawn(join('node_modules', '.bin', 'tsx'), ['local/start.ts', '--no-build'], {
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
    expect(output).toMatch(/"token_type": "Bearer"/);
    expect(output).toContain('npm run token -- --scopes');
    stack = JSON.parse(readFileSync(stackFile, 'utf8')) as LocalStack;
  }, 60_000);

  it('answers the caller example over the Lambda Invoke API, including a forced refresh after a 401', async () => {
    const lambda = new LambdaClient({
      endpoint: stack.lambdaEndpoint,
      region: stack.region,
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
    const broker = new TokenBrokerClient(invokeTransport(stack.functions.token!, lambda));
    const token = await broker.token(['limitrail.usage.read']);
    expect(token).toMatch(/^eyJ/);
    expect(await broker.token(['limitrail.usage.read'])).toBe(token);
    const fresh = await broker.tokenAfter401(['limitrail.usage.read'], token);
    expect(fresh).not.toBe(token);
    await expect(broker.token(['limitrail.admin'])).rejects.toMatchObject({ error: 'invalid_scope', status: 400 });
    lambda.destroy();
  });

  it('stops everything on Ctrl-C, leaving no process behind', async () => {
    const exited = new Promise<number | null>((done) => start!.once('exit', (code) => done(code)));
    start!.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(output).toContain('nothing left running');
    expect(alive(stack.pids.moto)).toBe(false);
    expect(alive(stack.pids.offline)).toBe(false);
    expect(existsSync(stackFile)).toBe(false);
  }, 30_000);
});
