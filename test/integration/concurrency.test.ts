import { randomUUID } from 'node:crypto';
import { InvokeStore, InvokeStoreBase } from '@aws/lambda-invoke-store';
import { DeleteItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { TABLE_PARTITION_KEY } from '../../functions/lib/cache/table/table-schema';
import type { HandlerRuntime } from '../../functions/lib/handlers/invocation';
import { createTokenHandler, type InvocationContext } from '../../functions/lib/handlers/token-handler';
import { createRuntime, loggerFromEnv, type Runtime } from '../../functions/lib/runtime';
import { GATE_ACCOUNT, GatedVerifier, type GateRole, gateProof, sessionNumber } from '../support/fakes/gated-verifier';
import { sharedLogContext, sharedMetrics } from '../support/fakes/shared-telemetry';
import { captureLogLines, stopCapturing } from '../support/log-capture';
import { type BrokerStack, seedToken, startBrokerStack } from '../support/stacks/broker-stack';

/**
 * One Node process serving overlapping invocations, as on Lambda Managed Instances: the token handler with its real
 * runtime (moto_server's DynamoDB, KMS and Secrets Manager, the LimitRail sandbox as the token endpoint, which is
 * slowed down), invoked 56 times at once with distinct request ids. Only STS is a fake, and a gate: it holds every
 * identity verification until all 50 proven invocations are waiting in it, then lets them all go on together, so
 * they are all in flight at once. Then memory hits, table hits, endpoint fetches (two keys, each one upstream
 * request shared by its requests) and refusals (no grant, a scope beyond the grant) run interleaved, while six
 * invocations with bad input are refused before the gate. Every audit line must name its own invocation, and every
 * EMF line must count that invocation's outcome and nothing of another's.
 *
 * The test of the test runs the same batch with a request context deliberately shared through the runtime's
 * telemetry port (one metrics accumulator for every invocation; one logger whose context is the latest
 * invocation's, as `addContext` on a shared logger had it) and sees each check fail.
 */
const AUDIENCE = 'limitrail-token-broker-concurrency-token';
const FUNCTION_NAME = 'limitrail-token-broker-concurrency-token';
const MEMORY = ['limitrail.usage.read'];
const TABLE = ['limitrail.usage.write'];
const ENDPOINT = [['limitrail.runtime.read'], ['limitrail.usage.read', 'limitrail.runtime.read']] as const;
const BEYOND_GRANT = ['limitrail.accounts.read'];
const GRANTED = ['limitrail.usage.read', 'limitrail.usage.write', 'limitrail.runtime.read'];
const ROUNDS = 10;
/** Per round: memory, table, two endpoint keys, one refusal after the gate (no grant or beyond it). */
const GATED = ROUNDS * 5;
const BAD_INPUT = 6;

type Outcome = 'memory' | 'table' | 'endpoint' | 'refused';
interface Planned {
  id: string;
  /** The number in the caller's session name: who made the request, whatever a log line claims. */
  n: number;
  event: Record<string, unknown>;
  outcome: Outcome;
  /** Reaches the identity check (the gate); bad input is refused before it. */
  gated: boolean;
}

/** The batch, interleaved: each round starts one invocation of each kind; bad input every few. */
const planBatch = async (): Promise<Planned[]> => {
  const planned: Planned[] = [];
  const add = async (role: GateRole, outcome: Outcome, request: Record<string, unknown>, gated = true) => {
    const n = planned.length;
    const identityProof = await gateProof(role, n, AUDIENCE);
    planned.push({ id: randomUUID(), n, event: { ...request, identityProof }, outcome, gated });
  };
  for (let round = 0; round < ROUNDS; round++) {
    await add('billing', 'memory', { scopes: MEMORY });
    await add('billing', 'table', { scopes: TABLE });
    await add('billing', 'endpoint', { scopes: ENDPOINT[0] });
    if (round % 2 === 0) await add('nogrant', 'refused', { scopes: MEMORY });
    else await add('billing', 'refused', { scopes: BEYOND_GRANT });
    await add('billing', 'endpoint', { scopes: ENDPOINT[1] });
    if (round < BAD_INPUT) await add('billing', 'refused', { scopes: MEMORY, minTtlSeconds: -5 }, false);
  }
  return planned;
};

type Line = Record<string, unknown>;
interface Batch {
  planned: Planned[];
  answers: Map<string, Record<string, unknown>>;
  logLines: Line[];
  emfLines: Line[];
  heldAtOnce: number;
  /** Token requests that reached the sandbox during the batch. */
  upstream: number;
}

/** How a batch's invocations are run: plainly, or inside the Lambda runtime's per-invocation store. */
type Invoke = (
  handler: ReturnType<typeof createTokenHandler>,
  planned: Planned,
  context: InvocationContext,
) => Promise<unknown>;
const plainly: Invoke = (handler, planned, context) => handler(planned.event, context);

/**
 * The class of container the batch runs in (`assemble` may rewire its runtime: the test of the test), over a table
 * holding only the table-hit key's token; one earlier invocation put the memory-hit key in its memory.
 */
const runBatch = async (
  stack: BrokerStack,
  env: Record<string, string>,
  assemble: (runtime: Runtime) => HandlerRuntime = (runtime) => runtime,
  invoke: Invoke = plainly,
): Promise<Batch> => {
  for (const item of await stack.scanTable()) {
    await stack.dynamodb.send(
      new DeleteItemCommand({ TableName: stack.tableName, Key: { [TABLE_PARTITION_KEY]: item[TABLE_PARTITION_KEY]! } }),
    );
  }
  await seedToken(stack, TABLE, { accessToken: `table-${randomUUID()}`, ageSec: 0, lifetimeSec: 3600 });
  const verifier = new GatedVerifier();
  const lines = captureLogLines([]);
  try {
    const handler = createTokenHandler(
      () => assemble(createRuntime(env, { callers: verifier })),
      () => loggerFromEnv(env),
    );
    const warmUp = (await handler(
      { scopes: MEMORY, identityProof: await gateProof('billing', 999, AUDIENCE) },
      { awsRequestId: 'warm-up' },
    )) as Record<string, unknown>;
    if (typeof warmUp.access_token !== 'string')
      throw new Error(`the warm-up invocation failed: ${JSON.stringify(warmUp)}`);
    const planned = await planBatch();
    lines.length = 0;
    const before = stack.sandbox.stats().tokenRequests;
    verifier.arm(GATED);
    const results = await Promise.all(
      planned.map(async (p) => {
        const context = { awsRequestId: p.id, functionName: FUNCTION_NAME, memoryLimitInMB: '256' };
        return [p.id, (await invoke(handler, p, context)) as Record<string, unknown>] as const;
      }),
    );
    const parsed = lines.map((l) => JSON.parse(l) as Line);
    return {
      planned,
      answers: new Map(results),
      logLines: parsed.filter((l) => !('_aws' in l)),
      emfLines: parsed.filter((l) => '_aws' in l),
      heldAtOnce: verifier.heldAtOnce,
      upstream: stack.sandbox.stats().tokenRequests - before,
    };
  } finally {
    stopCapturing(lines);
  }
};

/** The answers are the planned ones: a token for each hit and fetch, an OAuth refusal for each refusal. */
const checkAnswers = ({ planned, answers }: Batch) => {
  for (const p of planned) {
    const answer = answers.get(p.id)!;
    if (p.outcome === 'refused') expect(answer, p.id).toMatchObject({ error: expect.any(String) });
    else expect(answer, p.id).toMatchObject({ access_token: expect.any(String), client: 'limitrail' });
  }
};

/**
 * Each invocation has exactly one audit line, and it names that invocation: its `function_request_id` (and
 * `requestId`) is the id of the invocation whose caller the line names; a bad-input refusal, which names no caller,
 * is known by its requestId field. An issued line's source is the planned one.
 */
const checkAuditLines = ({ planned, logLines }: Batch) => {
  const byNumber = new Map(planned.map((p) => [String(p.n), p]));
  const byId = new Map(planned.map((p) => [p.id, p]));
  const audit = logLines.filter((l) => l.audit !== undefined);
  expect(audit, 'one audit line per invocation').toHaveLength(planned.length);
  const seen = new Set<string>();
  for (const line of audit) {
    const owner = byNumber.get(sessionNumber(line.caller) ?? '') ?? byId.get(String(line.requestId));
    expect(owner, `an audit line of no invocation: ${JSON.stringify(line)}`).toBeDefined();
    expect(line.function_request_id, `function_request_id of invocation #${owner!.n}'s audit line`).toBe(owner!.id);
    expect(line.requestId, `requestId of invocation #${owner!.n}'s audit line`).toBe(owner!.id);
    expect(line.cold_start, 'cold start in a batch after the first invocation').toBe(false);
    if (owner!.outcome === 'refused') expect(line.audit).toBe('refused');
    else expect(line, `invocation #${owner!.n}`).toMatchObject({ audit: 'issued', source: owner!.outcome });
    seen.add(owner!.id);
  }
  expect(seen.size, 'invocations with their own audit line').toBe(planned.length);
  const ids = new Set(planned.map((p) => p.id));
  for (const line of logLines) expect(ids.has(String(line.function_request_id)), line.message as string).toBe(true);
};

/** The outcome counts an invocation's EMF line has, by plan (upstream requests apart: one per key, by its leader). */
const expectedCounts = (p: Planned): Record<string, number> => {
  const identity: Record<string, number> = p.gated ? { IdentityVerifications: 1 } : {};
  if (p.outcome === 'refused') return { ...identity, Refusals: 1 };
  if (p.outcome === 'memory') return { ...identity, MemoryHits: 1 };
  if (p.outcome === 'table') return { ...identity, TableHits: 1 };
  return { ...identity, Misses: 1, EndpointFetches: 1 };
};
const UPSTREAM = new Set(['UpstreamRequests', 'UpstreamLatency']);
const NOT_COUNTS = new Set(['_aws', 'FunctionName', 'function_request_id']);

/**
 * Each invocation wrote exactly one EMF line, dated, naming it, and counting its own outcome only: exactly one of
 * MemoryHits, TableHits, EndpointFetches and Refusals, 1, the planned one. The upstream requests the lines count
 * are the ones that reached the endpoint, each counted by one invocation.
 */
const checkEmfLines = ({ planned, emfLines, upstream }: Batch) => {
  expect(emfLines, 'one EMF line per invocation').toHaveLength(planned.length);
  const byId = new Map(emfLines.map((l) => [l.function_request_id as string, l]));
  for (const p of planned) {
    const line = byId.get(p.id);
    expect(line, `the EMF line of invocation #${p.n}`).toBeDefined();
    expect((line!._aws as { Timestamp: unknown }).Timestamp).toEqual(expect.any(Number));
    const counts = Object.fromEntries(Object.entries(line!).filter(([k]) => !NOT_COUNTS.has(k) && !UPSTREAM.has(k)));
    expect(counts, `the counts of invocation #${p.n} (${p.outcome})`).toEqual(expectedCounts(p));
    if (p.outcome !== 'endpoint') expect(line, `invocation #${p.n}`).not.toHaveProperty('UpstreamRequests');
  }
  const upstreamCounted = emfLines.reduce((sum, l) => sum + ((l.UpstreamRequests as number | undefined) ?? 0), 0);
  expect(upstreamCounted, 'upstream requests counted').toBe(upstream);
};

/** The lines of a batch run in the Lambda runtime's per-invocation store carry that invocation's X-Ray trace id. */
const traceIdOf = (n: number) => `1-67a1b2c3-${String(n).padStart(24, '0')}`;

describe('one process serving 56 overlapping invocations (Lambda Managed Instances)', () => {
  let stack: BrokerStack;
  let env: Record<string, string>;
  let batch: Batch;
  let store: InvokeStoreBase;

  beforeAll(async () => {
    // The Lambda runtime's per-invocation store, as Managed Instances' runtime creates it at start (an
    // AsyncLocalStorage), before anything else would create one; used only where a test runs invocations in it.
    store = await InvokeStore.getInstanceAsync(true);
    stack = await startBrokerStack({ tableName: 'tokens-concurrency' });
    Object.assign(process.env, stack.env); // the SDK reads AWS_ENDPOINT_URL from the environment, as in Lambda
    stack.sandbox.setDelayMs(100); // endpoint fetches stay in flight while the hits and refusals answer
    env = {
      ...stack.env,
      CALLER_AUTH: 'grants',
      CALLER_PROOF_AUDIENCE: AUDIENCE,
      BROKER_CALLERS: JSON.stringify([
        { principal: `arn:aws:iam::${GATE_ACCOUNT}:role/billing`, client: 'limitrail', scopes: GRANTED },
      ]),
      AWS_LAMBDA_FUNCTION_NAME: FUNCTION_NAME,
      AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
    };
    batch = await runBatch(stack, env);
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
  });

  it('holds all 50 proven invocations in flight at once, and answers each as planned', () => {
    expect(batch.planned).toHaveLength(GATED + BAD_INPUT);
    expect(new Set(batch.planned.map((p) => p.id)).size).toBe(GATED + BAD_INPUT);
    expect(batch.heldAtOnce).toBe(GATED);
    checkAnswers(batch);
    const outcomes = batch.planned.map((p) => p.outcome);
    expect(outcomes.filter((o) => o === 'memory')).toHaveLength(ROUNDS);
    expect(outcomes.filter((o) => o === 'table')).toHaveLength(ROUNDS);
    expect(outcomes.filter((o) => o === 'endpoint')).toHaveLength(2 * ROUNDS);
    expect(outcomes.filter((o) => o === 'refused')).toHaveLength(ROUNDS + BAD_INPUT);
    expect(batch.upstream, 'one upstream request per endpoint key (single flight)').toBe(ENDPOINT.length);
  });

  it('writes every audit line with its own invocation request id', () => {
    checkAuditLines(batch);
  });

  it('writes one EMF line per invocation, counting only that invocation', () => {
    checkEmfLines(batch);
  });

  describe('the checks fail on a deliberately shared request context', () => {
    it('a shared metrics accumulator: the EMF check fails, the audit check still passes', async () => {
      const shared = await runBatch(stack, env, (runtime) => ({
        ...runtime,
        telemetry: sharedMetrics(runtime.telemetry),
      }));
      checkAnswers(shared);
      checkAuditLines(shared);
      expect(() => checkEmfLines(shared)).toThrow(/EMF line|counts of invocation/);
    }, 60_000);

    it("a shared logger context: the audit check fails on another invocation's function_request_id", async () => {
      const shared = await runBatch(stack, env, (runtime) => ({
        ...runtime,
        telemetry: sharedLogContext(runtime.telemetry),
      }));
      checkAnswers(shared);
      checkEmfLines(shared);
      expect(() => checkAuditLines(shared)).toThrow(/function_request_id of invocation/);
    }, 60_000);
  });

  describe('as the Lambda runtime runs them on Managed Instances (AWS_LAMBDA_MAX_CONCURRENCY, its InvokeStore)', () => {
    /**
     * The runtime interface client runs each invocation inside its InvokeStore context (an AsyncLocalStorage when
     * AWS_LAMBDA_MAX_CONCURRENCY is set): Powertools then scopes its own stores to the invocation, and reads the
     * X-Ray trace id from it. The store is @aws/lambda-invoke-store, the package Powertools itself depends on.
     */
    let inStore: Batch;
    beforeAll(async () => {
      vi.stubEnv('AWS_LAMBDA_MAX_CONCURRENCY', '64');
      const { REQUEST_ID, X_RAY_TRACE_ID } = InvokeStoreBase.PROTECTED_KEYS;
      const inContext: Invoke = (handler, planned, context) =>
        store.run({ [REQUEST_ID]: planned.id, [X_RAY_TRACE_ID]: `Root=${traceIdOf(planned.n)};Sampled=1` }, () =>
          handler(planned.event, context),
        );
      inStore = await runBatch(stack, env, undefined, inContext);
    }, 60_000);
    afterAll(() => {
      vi.unstubAllEnvs();
    });

    it('is the store Powertools reads, one context per invocation', async () => {
      expect(globalThis.awslambda?.InvokeStore).toBe(store);
      const { REQUEST_ID } = InvokeStoreBase.PROTECTED_KEYS;
      const seen = await Promise.all(
        ['a', 'b'].map((id) =>
          store.run({ [REQUEST_ID]: id }, async () => {
            await new Promise((resolve) => setImmediate(resolve));
            return store.getRequestId();
          }),
        ),
      );
      expect(seen).toEqual(['a', 'b']);
    });

    it('keeps every audit line, EMF line and trace id to its own invocation', () => {
      expect(inStore.heldAtOnce).toBe(GATED);
      checkAnswers(inStore);
      checkAuditLines(inStore);
      checkEmfLines(inStore);
      const byNumber = new Map(inStore.planned.map((p) => [String(p.n), p]));
      const proven = inStore.logLines.filter((l) => l.audit !== undefined && sessionNumber(l.caller) !== undefined);
      expect(proven).toHaveLength(GATED);
      for (const line of proven) {
        expect(line.xray_trace_id).toBe(traceIdOf(byNumber.get(sessionNumber(line.caller)!)!.n));
      }
    });
  });
});
