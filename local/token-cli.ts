/**
 * Asks the local stack (`npm start`) for a token, the way a real caller does: Lambda Invoke, with an identity
 * proof signed as one of the stack's demo caller roles (test/support/stacks/demo-callers.ts).
 *
 *   npm run token -- --scopes limitrail.usage.read,limitrail.usage.write [--as granted|nogrant] [--client NAME]
 *                    [--min-ttl SEC] [--show-token]
 *
 * With --stage, the smoke test of a deployed stage instead, with your own AWS credentials (local/stage-token.ts):
 *
 *   npm run token -- --stage prod --scopes limitrail.usage.read [--region R] [--profile P] [--function NAME]
 *                    [--audience A] [--client NAME] [--min-ttl SEC] [--show-token]
 *
 * Each run assumes the role in moto (AssumeRole) and signs a fresh proof with the session's credentials; the
 * broker replays it to moto's STS and checks the proven role against BROKER_CALLERS. `--as nogrant` signs as the
 * role without a grant, to see the refusal. Prints the function's JSON answer with the access token redacted
 * (prefix + sha256 fingerprint) unless --show-token; never the proof. Exits 1 on an OAuth error answer, 2 on
 * usage errors or when no stack runs.
 */

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';

import { DEMO_ROLES, type DemoCaller, isDemoCaller, signAsDemoCaller } from '../test/support/stacks/demo-callers';
import { type StageRequest, smokeTest } from './stage-token';

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
  /** How the broker authorizes callers (CALLER_AUTH); `npm start` runs `grants`. */
  callerAuth: 'grants' | 'invoke-permission';
  /** Where proofs go (the broker's AWS_ENDPOINT_URL_STS: moto) and the audience they must name. */
  stsEndpoint: string;
  proofAudience: string;
  /** The demo caller roles' ARNs (never credentials: a tool assumes the role when it needs them). */
  callers: Record<DemoCaller, string>;
  /** The SSM parameter (in moto) the broker reads its callers from, and how often (`npm run revoke` changes it). */
  callersParameter?: { name: string; maxAgeSec: number };
  sandbox: { url: string; tokenUrl: string; clientId: string };
  tableName: string;
  secretId: string;
  kmsKeyId: string;
  /** The KMS keys the private_key_jwt demo client signs with (`npm run jwks -- --local` publishes them). */
  signingKeyIds?: string[];
  pids: { offline: number; moto: number };
}

export interface TokenEvent {
  scopes: string[];
  client?: string;
  minTtlSeconds?: number;
}

/** Where `npm start` records the running stack; LOCAL_STACK_FILE moves it (the tests' own stack). */
export const STACK_FILE =
  process.env.LOCAL_STACK_FILE ?? join(dirname(fileURLToPath(import.meta.url)), '..', '.local', 'stack.json');

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

export const invokeFunction = async (
  client: LambdaClient,
  functionName: string,
  event: unknown,
): Promise<InvokeResult> => {
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

export interface RequestAsOptions {
  as: DemoCaller;
  event: TokenEvent;
  /** The AssumeRole session name: the last part of the proven ARN (and of the broker's audit line). */
  sessionName: string;
  /** Called with the session's ARN once the proof is signed, before the request is sent. */
  onSigned?: (arn: string) => void;
}

/**
 * One token request as a demo caller: assume its role in moto, sign a fresh identity proof with the session's
 * credentials, invoke the token function with it. Neither the credentials nor the proof leave this function.
 */
export const requestAs = async (stack: LocalStack, options: RequestAsOptions): Promise<InvokeResult> => {
  const functionName = stack.functions.token;
  const roleArn = stack.callers?.[options.as];
  if (!functionName || !roleArn || !stack.stsEndpoint || !stack.proofAudience) {
    throw new Error(
      `${STACK_FILE} names no token function or demo caller roles (an older npm start wrote it?): restart npm start`,
    );
  }
  const { arn, identityProof } = await signAsDemoCaller({
    stsEndpoint: stack.stsEndpoint,
    region: stack.region,
    roleArn,
    sessionName: options.sessionName,
    audience: stack.proofAudience,
  });
  options.onSigned?.(arn);
  const client = lambdaClientFor(stack);
  try {
    return await invokeFunction(client, functionName, { ...options.event, identityProof });
  } finally {
    client.destroy();
  }
};

/** True for the broker's OAuth-shaped error answer ({ error, error_description, status }). */
export const isOAuthError = (
  answer: unknown,
): answer is { error: string; error_description?: string; status?: number } =>
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
  'usage: npm run token -- --scopes a,b [--as granted|nogrant|jwt] [--client NAME] [--min-ttl SEC] [--show-token]\n' +
  '       npm run token -- --stage STAGE --scopes a,b [--region R] [--profile P] [--function NAME] [--audience A]\n' +
  '                        [--client NAME] [--min-ttl SEC] [--show-token]\n' +
  `  --as     the demo role whose proof is sent: granted (default, ${DEMO_ROLES.granted}: limitrail.usage.read and\n` +
  `           limitrail.usage.write), nogrant (${DEMO_ROLES.nogrant}: no grant, refused with access_denied) or jwt\n` +
  `           (${DEMO_ROLES.jwt}: the same scopes of limitrail-jwt, the client that signs with KMS: private_key_jwt)\n` +
  '  --stage  smoke-test a deployed stage with your own AWS credentials (default chain, or --profile): its token\n' +
  '           function <service>-<stage>-token, proofs for its audience (that name, or --audience)\n' +
  '  e.g. npm run token -- --scopes limitrail.usage.read,limitrail.usage.write\n' +
  '       npm run token -- --scopes limitrail.usage.read --as nogrant\n' +
  '       npm run token -- --stage prod --region eu-central-1 --scopes limitrail.usage.read';

class UsageError extends Error {}

interface Cli {
  event: TokenEvent;
  as: DemoCaller;
  showToken: boolean;
  help: boolean;
  /** With --stage: the smoke test of a deployed stage instead of the local stack. */
  stage?: Omit<StageRequest, 'event' | 'showToken'>;
}

const STAGE_ONLY = ['region', 'profile', 'function', 'audience'] as const;

const parseCli = (argv: string[]): Cli => {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        scopes: { type: 'string' },
        client: { type: 'string' },
        as: { type: 'string' },
        stage: { type: 'string' },
        region: { type: 'string' },
        profile: { type: 'string' },
        function: { type: 'string' },
        audience: { type: 'string' },
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
  if (values.help) return { event: { scopes: [] }, as: 'granted', showToken: false, help: true };
  const as = values.as ?? 'granted';
  if (!isDemoCaller(as)) throw new UsageError(`--as must be ${Object.keys(DEMO_ROLES).join(' or ')}`);
  let stage: Cli['stage'];
  if (values.stage !== undefined) {
    if (!/^[A-Za-z0-9-]{1,64}$/.test(values.stage)) throw new UsageError('--stage must be a stage name such as prod');
    if (values.as !== undefined) throw new UsageError('--as names a demo role of the local stack: not with --stage');
    stage = {
      stage: values.stage,
      region: values.region,
      profile: values.profile,
      functionName: values.function,
      audience: values.audience,
    };
  } else {
    const stray = STAGE_ONLY.find((name) => values[name] !== undefined);
    if (stray) throw new UsageError(`--${stray} goes with --stage (the smoke test of a deployed stage)`);
  }
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
  return { event, as, showToken: values['show-token'] ?? false, help: false, stage };
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
  if (cli.stage) {
    return smokeTest(
      { ...cli.stage, event: cli.event, showToken: cli.showToken },
      { out: (line) => console.log(line), err: (line) => console.error(line) },
    );
  }
  const stack = await readStack();
  if (!stack || !isAlive(stack.pid)) {
    console.error(NOT_RUNNING);
    return 2;
  }
  try {
    const { answer, functionError } = await requestAs(stack, {
      as: cli.as,
      event: cli.event,
      sessionName: 'npm-run-token',
      onSigned: (arn) => console.error(`as ${arn} (identity proof for ${stack.proofAudience}, not shown)`),
    });
    const shown = cli.showToken ? answer : redactAnswer(answer);
    if (functionError || isOAuthError(answer)) {
      console.error(JSON.stringify(shown, null, 2));
      return 1;
    }
    console.log(JSON.stringify(shown, null, 2));
    return 0;
  } catch (err) {
    const code =
      (err as { code?: string; cause?: { code?: string } }).code ?? (err as { cause?: { code?: string } }).cause?.code;
    if (code === 'ECONNREFUSED') {
      console.error(`Nothing answers at ${stack.lambdaEndpoint}. ${NOT_RUNNING}`);
      return 2;
    }
    throw err;
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
