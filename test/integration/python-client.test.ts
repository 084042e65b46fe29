import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CALLER_REGION,
  type CallerStack,
  FUNCTION_NAME,
  startCallerStack,
  UNGRANTED_SCOPE,
} from '../support/stacks/caller-stack';

/**
 * The Python caller package (clients/python, module limitrail_token_broker) against the real local stack: this file
 * starts it (test/support/stacks/caller-stack.ts) and runs the package's pytest suite with the machine's python3 (boto3 and
 * pytest; nothing is installed). clients/python/tests/test_stack.py reads the endpoints from LIMITRAIL_TEST_*
 * variables, and counts and injects through a small control server here: broker invocations as counted by the proxy
 * in front of the Invoke API, upstream requests at the sandbox, STS calls at the STS proxy. It also builds the package's
 * wheel the way CI does (clients/python/build_backend.py, standard library only) and installs it into a fresh venv,
 * offline, where it gets a token from the same stack.
 */
let stack: CallerStack;
let control: Server;
let controlUrl: string;

/** The pytest suite had this many tests when this check was written: fewer passing means some did not run. */
const PYTHON_TESTS_AT_LEAST = 36;
const PYTHON_TESTS_DIR = 'clients/python/tests';

/** The test functions the suite defines now (`def test_...` at the top level of its test_*.py files). */
const definedPythonTests = (): number =>
  readdirSync(PYTHON_TESTS_DIR)
    .filter((name) => /^test_.*\.py$/.test(name))
    .reduce(
      (sum, name) => sum + (readFileSync(`${PYTHON_TESTS_DIR}/${name}`, 'utf8').match(/^def test_/gm)?.length ?? 0),
      0,
    );

/** The count of tests passed in pytest's summary ("36 passed in 9.1s"), 0 when it has none. */
const passedCount = (output: string): number => Number(/\b(\d+) passed\b/.exec(output)?.[1] ?? 0);

const readJson = (req: import('node:http').IncomingMessage): Promise<Record<string, number>> =>
  new Promise((resolve, reject) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => resolve(text ? (JSON.parse(text) as Record<string, number>) : {}));
    req.on('error', reject);
  });

const startControl = async (): Promise<void> => {
  control = createServer((req, res) => {
    void readJson(req)
      .then((body) => {
        if (req.method === 'GET' && req.url === '/stats') {
          const { total, forced, url } = stack.invocations();
          res.writeHead(200, { 'content-type': 'application/json' });
          return void res.end(
            JSON.stringify({ invocations: total, forced, url, upstream: stack.upstream(), sts: stack.sts.calls() }),
          );
        }
        if (req.method === 'POST' && req.url === '/endpoint-faults') {
          const status = body.status ?? 503;
          stack.broker.sandbox.queueFaults(
            ...Array.from({ length: body.count ?? 1 }, () => ({ status, body: '{"title":"down"}' })),
          );
        } else if (req.method === 'POST' && req.url === '/function-errors') {
          stack.queueFunctionErrors(body.count ?? 1);
        } else {
          res.writeHead(404);
          return void res.end();
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}');
      })
      .catch(() => res.destroy());
  });
  await new Promise<void>((ready) => control.listen(0, '127.0.0.1', ready));
  controlUrl = `http://127.0.0.1:${(control.address() as AddressInfo).port}`;
};

/** The machine's environment less every AWS_* setting. */
const withoutAws = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('AWS_')) env[key] = value;
  return env;
};

/** pytest's exit code and output. Its environment: no inherited AWS settings; the granted role as the default chain. */
const pytest = (): Promise<{ code: number | null; output: string }> => {
  const env = withoutAws();
  const granted = stack.credentials('billing');
  const nogrant = stack.credentials('nogrant');
  Object.assign(env, {
    AWS_ACCESS_KEY_ID: granted.accessKeyId,
    AWS_SECRET_ACCESS_KEY: granted.secretAccessKey,
    AWS_SESSION_TOKEN: granted.sessionToken,
    AWS_DEFAULT_REGION: CALLER_REGION,
    AWS_ENDPOINT_URL_STS: stack.sts.endpoint,
    AWS_CONFIG_FILE: '/nonexistent/aws-config',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/aws-credentials',
    AWS_EC2_METADATA_DISABLED: 'true',
    LIMITRAIL_TEST_NOGRANT_ACCESS_KEY_ID: nogrant.accessKeyId,
    LIMITRAIL_TEST_NOGRANT_SECRET_ACCESS_KEY: nogrant.secretAccessKey,
    LIMITRAIL_TEST_NOGRANT_SESSION_TOKEN: nogrant.sessionToken,
    LIMITRAIL_TEST_LAMBDA_ENDPOINT: stack.lambdaEndpoint,
    LIMITRAIL_TEST_FUNCTION_URL: stack.functionUrl,
    LIMITRAIL_TEST_FUNCTION_NAME: FUNCTION_NAME,
    LIMITRAIL_TEST_REGION: CALLER_REGION,
    LIMITRAIL_TEST_UNGRANTED_SCOPE: UNGRANTED_SCOPE,
    LIMITRAIL_TEST_CONTROL_URL: controlUrl,
    PYTHONDONTWRITEBYTECODE: '1',
  });
  return new Promise((resolve, reject) => {
    const child = spawn('python3', ['-m', 'pytest', 'clients/python/tests', '-q', '-rs', '-p', 'no:cacheprovider'], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, output }));
  });
};

beforeAll(async () => {
  stack = await startCallerStack();
  await startControl();
}, 90_000);
afterAll(async () => {
  await new Promise<void>((done) => (control ? control.close(() => done()) : done()));
  await stack?.stop();
}, 30_000);

describe('the Python client (clients/python)', () => {
  it('passes its pytest suite against the local stack: 20 threads -> 1 invoke, one forced refresh per 401, 503 retried, refusals raised', async () => {
    const { code, output } = await pytest();
    expect(code, `python3 -m pytest clients/python/tests failed:\n${output}`).toBe(0);
    // Every test ran and passed: the stack tests skip themselves without the stack, and a test lost from the suite
    // shows as fewer passing.
    expect(passedCount(output), output).toBeGreaterThanOrEqual(Math.max(PYTHON_TESTS_AT_LEAST, definedPythonTests()));
    expect(output).not.toMatch(/skipped/);
    expect(stack.invocations().total).toBeGreaterThanOrEqual(10);
    // The broker audited the proven principal; its logs hold no session credentials.
    const logs = stack.logs().join('\n');
    expect(logs).toContain(stack.sessionArn('billing'));
    expect(logs).not.toContain(stack.credentials('billing').sessionToken);
  }, 60_000);

  it('builds as a wheel with only the standard library (clients/python/dist, what CI keeps) that installs offline into a fresh venv and gets a token', async () => {
    const run = promisify(execFile);
    // No pip configuration of this machine (its find-links and local indexes): as on a machine without an index.
    const offline = { ...withoutAws(), PIP_CONFIG_FILE: '/dev/null', PIP_NO_INDEX: '1', PYTHONDONTWRITEBYTECODE: '1' };
    const { stdout: built } = await run('python3', ['clients/python/build_backend.py'], { env: offline });
    const wheel = built.trim();
    expect(wheel).toMatch(/clients\/python\/dist\/limitrail_token_broker-\d+\.\d+\.\d+-py3-none-any\.whl$/);
    // The same sources make the same bytes: a second build is identical.
    const before = readFileSync(wheel);
    await run('python3', ['clients/python/build_backend.py'], { env: offline });
    expect(readFileSync(wheel).equals(before)).toBe(true);

    const venv = mkdtempSync(join(tmpdir(), 'broker-venv-'));
    try {
      // boto3 from the machine's site-packages (no index to fetch it from); the package only from the wheel.
      await run('python3', ['-m', 'venv', '--system-site-packages', venv], { env: offline });
      const python = join(venv, 'bin', 'python');
      const pip = await run(python, ['-m', 'pip', 'install', '--no-index', '--no-deps', wheel], { env: offline });
      expect(pip.stdout).toContain('Successfully installed limitrail-token-broker');
      const granted = stack.credentials('billing');
      const script = [
        'import importlib.metadata, os, limitrail_token_broker as lr',
        'broker = lr.TokenBrokerClient(lr.invoke_transport(os.environ["FUNCTION_NAME"]))',
        'token = broker.token(["limitrail.usage.read"])',
        'print(lr.__file__, importlib.metadata.version("limitrail-token-broker"), token.startswith("eyJ"))',
      ].join('\n');
      const { stdout } = await run(python, ['-c', script], {
        cwd: venv, // not the repository: nothing of clients/python/src on the path
        env: {
          ...offline,
          FUNCTION_NAME,
          AWS_ACCESS_KEY_ID: granted.accessKeyId,
          AWS_SECRET_ACCESS_KEY: granted.secretAccessKey,
          AWS_SESSION_TOKEN: granted.sessionToken,
          AWS_DEFAULT_REGION: CALLER_REGION,
          AWS_ENDPOINT_URL_LAMBDA: stack.lambdaEndpoint,
          AWS_ENDPOINT_URL_STS: stack.sts.endpoint,
          AWS_CONFIG_FILE: '/nonexistent/aws-config',
          AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/aws-credentials',
        },
      });
      const [file, version, gotToken] = stdout.trim().split(' ');
      expect(file!.startsWith(`${venv}/lib/`)).toBe(true);
      expect(file).toMatch(/\/site-packages\/limitrail_token_broker\/__init__\.py$/);
      expect(version).toBe(/version = "([^"]+)"/.exec(readFileSync('clients/python/pyproject.toml', 'utf8'))![1]);
      expect(gotToken).toBe('True');
    } finally {
      rmSync(venv, { recursive: true, force: true });
    }
  }, 60_000);
});
