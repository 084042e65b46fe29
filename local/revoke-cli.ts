/**
 * Revokes a caller of the local stack (`npm start`) the way an operator does in an incident (docs/operations.md,
 * "Revoke a caller in an incident"): adds its ARN to the `revoked` list of the callers parameter, in moto's SSM
 * (in AWS: `aws ssm put-parameter`, docs/deploy.md). No deploy, no restart: every container of the broker reads the
 * parameter again within CALLERS_MAX_AGE_SEC (5 s locally). For a demo role, it then asks for a token as that caller
 * until the broker refuses it, and says how long that took.
 *
 *   npm run revoke -- granted|nogrant|ARN [--session NAME] [--lift] [--no-wait]
 *   npm run revoke -- --list
 *
 * `granted` revokes the demo role with every session of it; `--session NAME` only the session of that name
 * (`arn:aws:sts::123456789012:assumed-role/limitrail-demo-caller/NAME`, as a stolen session would be revoked);
 * `--lift` takes the entry off the list again. Exits 1 when the broker did not answer as expected in time, 2 on usage
 * errors or when no stack runs.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';

import { parseRevocation } from '../functions/lib/config/caller-list';
import { getCallersParameter, putCallersParameter } from '../test/support/stacks/callers-parameter';
import { DEMO_GRANT, type DemoCaller, isDemoCaller } from '../test/support/stacks/demo-callers';
import { isAlive, isOAuthError, type LocalStack, readStack, requestAs } from './token-cli';

const USAGE = `usage: npm run revoke -- granted|nogrant|ARN [--session NAME] [--lift] [--no-wait]
       npm run revoke -- --list
  granted|nogrant  a demo role of the local stack, with every session of it
  ARN              an IAM role or user ARN, or an assumed-role session ARN
  --session NAME   only that session of the demo role (what you revoke for a stolen session)
  --lift           take it off the revoked list again
  --no-wait        do not ask for a token afterwards to see the broker's answer change
  --list           show the callers parameter`;
/** Session name of the checks: the one `npm run token` signs as, so that both see the same. */
const CHECK_SESSION = 'npm-run-token';
const POLL_MS = 250;

class UsageError extends Error {}

interface Cli {
  target?: string;
  session?: string;
  lift: boolean;
  wait: boolean;
  list: boolean;
  help: boolean;
}

const parseCli = (argv: string[]): Cli => {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        session: { type: 'string' },
        lift: { type: 'boolean', default: false },
        'no-wait': { type: 'boolean', default: false },
        list: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  const cli: Cli = {
    target: positionals[0],
    session: values.session,
    lift: values.lift ?? false,
    wait: !values['no-wait'],
    list: values.list ?? false,
    help: values.help ?? false,
  };
  if (cli.help || cli.list) return cli;
  if (positionals.length !== 1) throw new UsageError('name one caller: granted, nogrant or an ARN');
  if (cli.session !== undefined) {
    if (!isDemoCaller(cli.target!)) throw new UsageError('--session goes with a demo role: granted, nogrant or jwt');
    if (!/^[\w+=,.@-]{2,64}$/.test(cli.session)) throw new UsageError('--session must be a role session name');
  }
  return cli;
};

/** The ARN to revoke, and the demo caller (and session) to check it with, if any. */
const resolveTarget = (stack: LocalStack, cli: Cli): { arn: string; check?: { as: DemoCaller; session: string } } => {
  const target = cli.target!;
  if (!isDemoCaller(target)) {
    if (!parseRevocation(target)) {
      throw new UsageError(`${JSON.stringify(target)} is not a role, user or assumed-role session ARN`);
    }
    return { arn: target };
  }
  const roleArn = stack.callers[target];
  if (cli.session === undefined) return { arn: roleArn, check: { as: target, session: CHECK_SESSION } };
  const [, , , , account, resource] = roleArn.split(':');
  const roleName = resource!.split('/').pop();
  return {
    arn: `arn:aws:sts::${account}:assumed-role/${roleName}/${cli.session}`,
    check: { as: target, session: cli.session },
  };
};

/** Asks for a token as the caller until the answer is what the change should give; how long that took, if it did. */
const awaitAnswer = async (
  stack: LocalStack,
  check: { as: DemoCaller; session: string },
  revoked: boolean,
  withinMs: number,
): Promise<{ ms: number; answer: unknown } | undefined> => {
  const startedMs = Date.now();
  const expected = (answer: unknown) =>
    revoked
      ? isOAuthError(answer) && String(answer.error_description).includes('is revoked')
      : !isOAuthError(answer) || !String(answer.error_description).includes('is revoked');
  while (Date.now() - startedMs < withinMs) {
    const { answer } = await requestAs(stack, {
      as: check.as,
      event: { scopes: [DEMO_GRANT.scopes[0]] },
      sessionName: check.session,
    });
    if (expected(answer)) return { ms: Date.now() - startedMs, answer };
    await sleep(POLL_MS);
  }
  return undefined;
};

const main = async (): Promise<number> => {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  let cli: Cli;
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
  if (!stack || !isAlive(stack.pid) || !stack.callersParameter) {
    console.error('The local stack is not running (or an older npm start wrote .local/stack.json): run `npm start`.');
    return 2;
  }
  const parameter = { endpoint: stack.motoEndpoint, region: stack.region, name: stack.callersParameter.name };
  const value = await getCallersParameter(parameter);
  if (cli.list) {
    console.log(JSON.stringify(value, null, 2));
    return 0;
  }
  let target: ReturnType<typeof resolveTarget>;
  try {
    target = resolveTarget(stack, cli);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`${err.message}\n${USAGE}`);
    return 2;
  }
  const revoked = (value.revoked ?? []).filter((arn) => arn !== target.arn);
  if (!cli.lift) revoked.push(target.arn);
  await putCallersParameter(parameter, { ...value, revoked });
  const maxAgeSec = stack.callersParameter.maxAgeSec;
  console.log(
    `${cli.lift ? 'lifted the revocation of' : 'revoked'} ${target.arn} in ${parameter.name} (moto's SSM); ` +
      `every container reads it within ${maxAgeSec} s (CALLERS_MAX_AGE_SEC)`,
  );
  console.log(`revoked now: ${revoked.length === 0 ? 'nobody' : revoked.join(', ')}`);
  if (!cli.wait || !target.check) return 0;
  const seen = await awaitAnswer(stack, target.check, !cli.lift, maxAgeSec * 1000 + 10_000);
  if (!seen) {
    console.error(`the broker did not ${cli.lift ? 'serve' : 'refuse'} ${target.check.as} in time`);
    return 1;
  }
  const what = isOAuthError(seen.answer)
    ? `${seen.answer.error} ${seen.answer.status}: ${seen.answer.error_description}`
    : 'a token';
  console.log(`after ${(seen.ms / 1000).toFixed(1)} s, as ${target.check.as} (${target.check.session}): ${what}`);
  return 0;
};

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`revoke failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
