/**
 * Runs the LimitRail sandbox standalone: `tsx local/sandbox-cli.ts --port 4010`.
 * Prints the URL, the client id and the generated client secret once on start (a local dev tool:
 * the secret is random per run and the server listens on 127.0.0.1 only). Stops on SIGINT/SIGTERM.
 */
import { parseArgs } from 'node:util';

import { startSandbox } from '../test/support/stacks/sandbox';

const USAGE = 'usage: tsx local/sandbox-cli.ts [--port 4010] [--token-lifetime-sec 3600]';

function parsePositiveInt(value: string | undefined, name: string, allowZero: boolean): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!/^\d+$/.test(value) || (!allowZero && parsed === 0)) {
    throw new Error(`--${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer\n${USAGE}`);
  }
  return parsed;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      'token-lifetime-sec': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const port = parsePositiveInt(values.port, 'port', true) ?? 4010;
  if (port > 65535) throw new Error(`--port must be at most 65535\n${USAGE}`);
  const tokenLifetimeSec = parsePositiveInt(values['token-lifetime-sec'], 'token-lifetime-sec', false);

  const sandbox = await startSandbox({ port, tokenLifetimeSec, log: (line) => console.log(line) });
  const [client] = sandbox.clients;
  console.log(`LimitRail sandbox listening on ${sandbox.url}`);
  console.log(`  token endpoint: ${sandbox.tokenUrl}`);
  if (client) {
    console.log(`  client_id:      ${client.clientId}`);
    console.log(`  client_secret:  ${client.clientSecret}   (random for this run; not printed again)`);
    console.log(`  scopes:         ${client.scopes.join(' ')}`);
  }

  let stopping = false;
  const shutdown = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: stopping sandbox`);
    sandbox.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(`sandbox did not stop cleanly: ${error instanceof Error ? error.message : String(error)}`);
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : String(error));
  process.exit(1);
});
