/**
 * Asks the local stack (`npm start`) for a token, the way a real caller does: Lambda Invoke.
 *
 *   npm run token -- --scopes limitrail.usage.read,limitrail.usage.write [--client NAME] [--min-ttl SEC] [--show-token]
 *
 * Prints the function's JSON answer with the access token redacted (prefix + sha256 fingerprint)
 * unless --show-token. Exits 1 on an OAuth error answer, 2 on usage errors or when no stack runs.
 */
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

/** What local/start.ts writes to .local/stack.json while the stack runs. */
export interface LocalStack {
  startedAt: string;
  /** PID of the `npm start` process (local/start.ts). */
  pid: number;
  region: string;
  stage: string;
  /** serverless-offline's Lambda API (Invoke). */
  lambdaEndpoint: string;
  /** Function key -> deployed-style function name, e.g. token -> limitrail-token-broker-local-token. */
  functions: Record<string, string>;
  motoEndpoint: string;
  sandbox: { url: string; tokenUrl: string; clientId: string };
  tableName: string;
  secretId: string;
  kmsKeyId: string;
  pids: { offline: number; moto: number };
}

export interface TokenEvent {
  scopes: string[];
  client?: string;
  minTtlSeconds?: number;
}

/** Where `npm start` records the running stack; LOCAL_STACK_FILE moves it (the tests' own stack). */
export const STACK_FILE = process.env.LOCAL_STACK_FILE ?? join(dirname(fileURLToPath(import.meta.url)), '..', '.local', 'stack.json');

const NOT_RUNNING = 'The local stack is not running. Start it with `npm start` (in another terminal), then try again.';

/** `eyJhbGci…sha256:0123456789ab`: enough to tell tokens apart, useless as a credential. */
export const redactToken = (token: string): string =>
  `${token.slice(0, 8)}…sha256:${createHash('sha256').update(token).digest('hex').slice(0, 12)}`;

/** The answer with access_token redacted; everything else as is. */
export const redactAnswer = (answer: unknown): unknown =>
  answer && typeof answer === 'object' && typeof (answer as { access_token?: unknown }).access_token === 'string'
    ? { ...answer, access_token: redactToken((answer as { access_token: string }).access_token) }
    : answer;

export const lambdaClientFor = (stack: Pick<LocalStack, 'lambdaEndpoint' | 'region'>): LambdaClient =>
  new LambdaClient({
    endpoint: stack.lambdaEndpoint,
    region: stack.region,
    // serverless-offline checks no signature; real credentials are neither needed nor wanted here.
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts: 1,
  });

export interface InvokeResult {
  /** The function's JSON answer (for an unhandled error: Lambda's {errorType, errorMessage}). */
  answer: unknown;
  /** Set when the function failed instead of answering (Lambda's X-Amz-Function-Error). */
  functionError: string | undefined;
}

export const invokeFunction = async (client: LambdaClient, functionName: string, event: unknown): Promise<InvokeResult> => {
  const out = await client.send(
    new InvokeCommand({ FunctionName: functionName, Payload: new TextEncoder().encode(JSON.stringify(event)) }),
  );
  const text = out.Payload ? new TextDecoder().decode(out.Payload) : '';
  let answer: unknown = text;
  try {
    answer = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: show it as text
  }
  return { answer, functionError: out.FunctionError };
};

/** True for the broker's OAuth-shaped error answer ({ error, error_description, status }). */
export const isOAuthError = (answer: unknown): answer is { error: string; error_description?: string; status?: number } =>
  !!answer && typeof answer === 'object' && typeof (answer as { error?: unknown }).error === 'string';

export const readStack = async (file = STACK_FILE): Promise<LocalStack | undefined> => {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as LocalStack;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read ${file}: ${(err as Error).message}`);
  }
};

/** Whether a process with this PID exists (EPERM: it does, but is not ours). */
export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

const USAGE =
  'usage: npm run token -- --scopes a,b [--client NAME] [--min-ttl SEC] [--show-token]\n' +
  '  e.g. npm run token -- --scopes limitrail.usage.read,limitrail.usage.write';

class UsageError extends Error {}

const parseCli = (argv: string[]): { event: TokenEvent; showToken: boolean; help: boolean } => {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        scopes: { type: 'string' },
        client: { type: 'string' },
        'min-ttl': { type: 'string' },
        'show-token': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) return { event: { scopes: [] }, showToken: false, help: true };
  const scopes = (values.scopes ?? '')
    .split(/[,\s]+/)
    .map((s) => s.trim())
    .filter(Boolean);
  if (scopes.length === 0) throw new UsageError('--scopes is required (comma-separated)');
  const event: TokenEvent = { scopes };
  if (values.client !== undefined) event.client = values.client;
  if (values['min-ttl'] !== undefined) {
    if (!/^\d+$/.test(values['min-ttl'])) throw new UsageError('--min-ttl must be a whole number of seconds');
    event.minTtlSeconds = Number(values['min-ttl']);
  }
  return { event, showToken: values['show-token'] ?? false, help: false };
};

const main = async (): Promise<number> => {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  let cli;
  try {
    cli = parseCli(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`${err.message}\n${USAGE}`);
    return 2;
  }
  if (cli.help) {
    console.log(USAGE);
    return 0;
  }
  const stack = await readStack();
  if (!stack || !isAlive(stack.pid)) {
    console.error(NOT_RUNNING);
    return 2;
  }
  const functionName = stack.functions.token;
  if (!functionName) throw new Error(`${STACK_FILE} names no token function`);
  const client = lambdaClientFor(stack);
  try {
    const { answer, functionError } = await invokeFunction(client, functionName, cli.event);
    const shown = cli.showToken ? answer : redactAnswer(answer);
    if (functionError || isOAuthError(answer)) {
      console.error(JSON.stringify(shown, null, 2));
      return 1;
    }
    console.log(JSON.stringify(shown, null, 2));
    return 0;
  } catch (err) {
    const code = (err as { code?: string; cause?: { code?: string } }).code ?? (err as { cause?: { code?: string } }).cause?.code;
    if (code === 'ECONNREFUSED') {
      console.error(`Nothing answers at ${stack.lambdaEndpoint}. ${NOT_RUNNING}`);
      return 2;
    }
    throw err;
  } finally {
    client.destroy();
  }
};

// Run only as a program (`tsx local/token-cli.ts`), not when local/start.ts imports the helpers.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(`token request failed: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(1);
    },
  );
}
