/**
 * The cost table of `npm run bench`: what one request on each path costs, counted against real local components,
 * then priced per million requests for a scenario (bench/cost-model.ts; prices in bench/prices.ts).
 *
 * Counted in process, in the deployed configuration (CALLER_AUTH=grants: each request carries a new identity proof),
 * with recording AWS clients (test/support/code-calls.ts) against moto_server, STS behind the stack's counting proxy
 * and the LimitRail sandbox counting token requests: a miss in a cold container, a table hit in another cold
 * container, then a memory hit in that one. DynamoDB request units follow from the commands and the size of the item
 * the broker wrote (on-demand: a read of up to 4 KB is 1 unit strongly consistent, 0.5 eventually consistent; a write
 * is 1 unit per KB of the larger of the item before and after, here counted at the written item's size).
 */
import { readFileSync } from 'node:fs';
import { type AttributeValue, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';

import { signIdentityProof } from '@limitrail/token-broker-client';
import { recording, type SentCommand } from '../test/support/infra/code-calls';
import { inProcessContainer, REGION, startBrokerStack } from '../test/support/stacks/broker-stack';
import { STS_REGION, startStsStack } from '../test/support/stacks/sts-stack';
import {
  ASSUMED_MS,
  brokerUsage,
  costRows,
  type MeasuredPaths,
  naiveUsage,
  type PathCalls,
  type Scenario,
} from './cost-model';

/**
 * DynamoDB's size of an item (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html):
 * attribute names plus values; strings and binaries by their bytes, numbers about 1 byte per 2 significant digits
 * plus 1, booleans and nulls 1 byte, lists and maps 3 bytes plus 1 per element plus their contents.
 */
export const itemBytes = (item: Record<string, AttributeValue>): number => {
  const value = (v: AttributeValue): number => {
    if (v.S !== undefined) return Buffer.byteLength(v.S);
    if (v.B !== undefined) return v.B.length;
    if (v.N !== undefined) return Math.ceil(v.N.replace(/^-|\.|^0+/g, '').length / 2) + 1;
    if (v.BOOL !== undefined || v.NULL !== undefined) return 1;
    if (v.SS) return v.SS.reduce((n, s) => n + Buffer.byteLength(s), 0);
    if (v.NS) return v.NS.reduce((n, s) => n + Math.ceil(s.length / 2) + 1, 0);
    if (v.L) return 3 + v.L.reduce((n, e) => n + 1 + value(e), 0);
    if (v.M) return 3 + Object.entries(v.M).reduce((n, [k, e]) => n + 1 + Buffer.byteLength(k) + value(e), 0);
    return 0;
  };
  return Object.entries(item).reduce((n, [name, v]) => n + Buffer.byteLength(name) + value(v), 0);
};

interface Counted {
  commands: SentCommand[];
  sts: number;
  upstream: number;
}

const pathCalls = ({ commands, sts, upstream }: Counted, bytes: number): PathCalls => {
  const of = (service: SentCommand['service']) => commands.filter((c) => c.service === service);
  const reads = of('dynamodb').filter((c) => c.command === 'GetItem');
  const writes = of('dynamodb').filter((c) => ['UpdateItem', 'PutItem', 'DeleteItem'].includes(c.command));
  const other = of('dynamodb').filter((c) => !reads.includes(c) && !writes.includes(c));
  if (other.length > 0) throw new Error(`the cost model knows no DynamoDB ${other[0]!.command}`);
  return {
    dynamodbReadUnits: reads.reduce((n, c) => n + (c.input.ConsistentRead ? 1 : 0.5) * Math.ceil(bytes / 4096), 0),
    dynamodbWriteUnits: writes.length * Math.ceil(bytes / 1024),
    dynamodbRequests: reads.length + writes.length,
    kms: of('kms').length,
    sts,
    secretsManager: of('secretsmanager').length,
    upstream,
  };
};

/** The calls of a miss, a table hit and a memory hit, and what they were. */
export const measurePaths = async (): Promise<{ paths: MeasuredPaths; itemBytes: number; described: string[][] }> => {
  const stack = await startBrokerStack({ tableName: 'tokens-bench-cost' });
  const sts = await startStsStack(['billing']);
  const scopes = ['limitrail.usage.write'];
  const env = {
    ...stack.env,
    CALLER_AUTH: 'grants',
    CALLER_PROOF_AUDIENCE: 'bench-cost',
    AWS_ENDPOINT_URL_STS: sts.endpoint,
    BROKER_CALLERS: JSON.stringify([{ principal: sts.roleArn('billing'), client: 'limitrail', scopes }]),
  };
  const config = {
    endpoint: stack.moto.endpoint,
    region: REGION,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  };
  const sent: SentCommand[] = [];
  const made: { destroy(): void }[] = [];
  const container = () => {
    const clients = {
      dynamodb: recording(new DynamoDBClient(config), 'dynamodb', sent),
      secretsManager: recording(new SecretsManagerClient(config), 'secretsmanager', sent),
      kms: recording(new KMSClient(config), 'kms', sent),
    };
    made.push(...Object.values(clients));
    return inProcessContainer(env, [], clients);
  };
  // SigV4 is deterministic: proofs signed within one second are the same proof. Date each one a second apart.
  let signed = 0;
  const signedFrom = Date.now();
  const request = async (handler: ReturnType<typeof container>): Promise<Counted> => {
    const identityProof = await signIdentityProof({
      credentials: sts.credentials('billing'),
      region: STS_REGION,
      audience: 'bench-cost',
      stsUrl: sts.endpoint,
      signingDate: new Date(signedFrom - 1000 * signed++),
    });
    const before = { sent: sent.length, sts: sts.calls(), upstream: stack.sandbox.stats().tokenRequests };
    const answer = await handler({ scopes, identityProof });
    if (answer.token_type !== 'Bearer') throw new Error(`cost bench request failed: ${JSON.stringify(answer.error)}`);
    return {
      commands: sent.slice(before.sent),
      sts: sts.calls() - before.sts,
      upstream: stack.sandbox.stats().tokenRequests - before.upstream,
    };
  };
  try {
    const miss = await request(container());
    const other = container();
    const tableHit = await request(other);
    const memoryHit = await request(other);
    const [item] = await stack.scanTable();
    if (!item) throw new Error('the broker wrote no item');
    const bytes = itemBytes(item);
    const describe = (name: string, c: Counted) => [
      name,
      c.commands.map((s) => `${s.service}:${s.command}${s.input.ConsistentRead ? ' (consistent)' : ''}`).join(', ') ||
        '-',
      String(c.sts),
      String(c.upstream),
    ];
    return {
      paths: {
        miss: pathCalls(miss, bytes),
        tableHit: pathCalls(tableHit, bytes),
        memoryHit: pathCalls(memoryHit, bytes),
      },
      itemBytes: bytes,
      described: [
        ['path', 'AWS calls (as sent)', 'STS calls', 'upstream requests'],
        describe('miss (cold container)', miss),
        describe('table hit (cold container)', tableHit),
        describe('memory hit (warm container)', memoryHit),
      ],
    };
  } finally {
    for (const c of made) c.destroy();
    await Promise.allSettled([sts.stop(), stack.stop()]);
  }
};

/** The functions' memory: serverless.yml provider.memorySize. */
export const configuredMemoryMb = (): number => {
  const match = /^ {2}memorySize:\s*(\d+)\s*$/m.exec(readFileSync('serverless.yml', 'utf8'));
  if (!match) throw new Error('serverless.yml sets no provider.memorySize');
  return Number(match[1]);
};

/** Prints the cost table for `scenario` with `table` (bench/run.ts's printer). */
export const printCost = async (scenario: Scenario, table: (rows: string[][]) => void): Promise<void> => {
  const measured = await measurePaths();
  console.log('## What one request costs, by path (counted against moto, STS and the sandbox; CALLER_AUTH=grants)');
  table(measured.described);
  console.log(
    `The item the broker wrote: ${measured.itemBytes} bytes (DynamoDB's item size). Assumed billed Lambda ms per path: ` +
      `1 + per call STS ${ASSUMED_MS.sts}, DynamoDB ${ASSUMED_MS.dynamodb}, KMS ${ASSUMED_MS.kms}, Secrets Manager ` +
      `${ASSUMED_MS.secretsManager}, token endpoint ${ASSUMED_MS.upstream}; init ${ASSUMED_MS.init} per cold start.\n`,
  );
  const broker = brokerUsage(scenario, measured.paths);
  const naive = naiveUsage(scenario, measured.paths);
  console.log(
    `## Cost per ${scenario.requests.toLocaleString('en-US')} token requests: warm-hit ratio ${scenario.warmHitRatio}, ` +
      `${scenario.containers} cold starts, ${scenario.keys} key(s), over ${scenario.hours} h with ${scenario.tokenLifetimeSec} s ` +
      `tokens, ${scenario.memoryMb} MB (prices: bench/prices.ts, us-east-1 list prices)`,
  );
  console.log(
    `broker: ${broker.memoryHits.toLocaleString('en-US')} memory hits, ${broker.tableHits.toLocaleString('en-US')} table hits, ` +
      `${broker.misses} misses; naive broker (memory only, secret per cold start): ${naive.misses.toLocaleString('en-US')} token fetches`,
  );
  table(costRows(broker, naive));
  console.log(
    'Not per request, so not above: the KMS key ($1 a month), the secret ($0.40 a month), the Cognito app client if the\n' +
      'endpoint is Cognito ($6 a month), prewarm runs (288 a day at rate(5 minutes)), table storage, logs and metrics.\n',
  );
};
