/**
 * Starting a request in a container, as its handler would: a token request (TokenBroker.getToken), a forced refresh
 * after a 401 with or without the rejected token's fingerprint, or a prewarm run (the prewarm handler's runPrewarm over
 * the configured scope sets). The request runs on; what it ends with is checked when it ends (answer-properties.ts).
 */
import type { TokenRequest } from '../../functions/lib/domain/token-request';
import type { HandlerRuntime } from '../../functions/lib/handlers/invocation';
import { runPrewarm } from '../../functions/lib/handlers/prewarm-handler';
import { sha256Hex } from '../../functions/lib/shared/hash';
import type { Logger } from '../../functions/lib/shared/logger';
import { silentLog } from '../support/fakes/silent-log';
import type { ModelRequest } from './answer-properties';
import type { Container } from './container';
import { KEYS, type Operation } from './operations';
import type { World } from './world';

/** A request's budget must cover waiting out a dead holder's lease and a fetch after it to be owed an answer. */
const healthyBudgetMs = (world: World) => 2 * world.config.refreshLeaseMs + 4_000;

/** The default minTtlSeconds of a request that gives none (a forced refresh here). */
const DEFAULT_MIN_TTL_SEC = 60;

export const launch = (
  world: World,
  c: Container,
  op: Extract<Operation, { op: 'get' | 'forced' | 'prewarm' }>,
  id: number,
): void => {
  const nowMs = c.nowMs();
  const scopes = op.op === 'prewarm' ? undefined : KEYS[op.key]!;
  const key = op.op === 'prewarm' ? undefined : world.keys[op.key];
  const answered = op.op === 'prewarm' ? [] : world.answered[op.key]!;
  const rejected =
    op.op !== 'forced' || op.fingerprint === 'none'
      ? undefined
      : op.fingerprint === 'last'
        ? answered[answered.length - 1]
        : answered[0];
  const req: ModelRequest = {
    id,
    who: c,
    kind: op.op,
    key,
    scopes: scopes?.join(' '),
    minTtlSec: op.op === 'get' ? op.minTtlSec : DEFAULT_MIN_TTL_SEC,
    rejected,
    budgetMs: op.budgetMs,
    deadlineMs: nowMs + op.budgetMs,
    startTrueMs: world.sim.nowMs,
    startClockMs: nowMs,
    // The broker's flights (a table read, a miss, a refresh ahead) are shared by the requests of a key; a prewarm run
    // shares none.
    joined: key !== undefined && [...world.live].some((r) => r.who === c && r.key === key),
    done: false,
    healthy: false,
  };
  world.live.add(req);
  c.running += 1;
  const ended = () => {
    if (c.crashed) return false;
    req.done = true;
    world.live.delete(req);
    c.running -= 1;
    req.healthy = op.budgetMs >= healthyBudgetMs(world) && world.healthySince(req.startTrueMs - world.healthWindowMs);
    return true;
  };
  const trace = (what: string) => world.trace.add(world.sim.nowMs, c, `r${id} ${what}`, c.nowMs());
  if (op.op === 'prewarm') {
    // runPrewarm reads only the config, the broker and the clock of the runtime; the log is silent.
    const runtime = { config: world.config, broker: c.broker, clock: { nowMs: () => c.nowMs() } } as HandlerRuntime;
    runPrewarm(runtime, req.deadlineMs, silentLog as unknown as Logger).then(
      (summary) => {
        if (!ended()) return;
        trace(`prewarm ended: ${summary.results.map((r) => `${r.scopes} ${r.outcome}`).join(', ')}`);
        for (const r of summary.results) world.outcome(`prewarm:${r.outcome}`);
        world.answers.prewarmed(req, summary);
      },
      (threw: unknown) => {
        if (ended()) world.answers.prewarmed(req, { threw });
      },
    );
    return;
  }
  const request: TokenRequest = {
    client: world.client,
    scopes: scopes!,
    minTtlSec: req.minTtlSec,
    forceRefresh: op.op === 'forced',
    rejectedTokenSha256: rejected === undefined ? undefined : sha256Hex(rejected),
  };
  trace(`starts: ${op.op} ${req.scopes}${rejected ? ` reporting ${rejected} rejected` : ''}`);
  c.broker.getToken(request, { deadlineMs: req.deadlineMs, log: silentLog }).then(
    ({ answer, source }) => {
      if (!ended()) return;
      trace(
        `answered ${answer.access_token} from ${source}${answer.stale ? ' (stale)' : ''}, ${answer.expires_in} s left`,
      );
      if (answer.access_token !== answered[answered.length - 1]) answered.push(answer.access_token);
      world.outcome(answer.stale ? 'answer:stale' : `answer:${source}`);
      world.answers.answered(req, answer, world.sim.nowMs);
    },
    (err: unknown) => {
      if (!ended()) return;
      const reason = (err as { reason?: string }).reason ?? String(err);
      trace(`failed: ${reason}`);
      world.outcome(`error:${reason}`);
      world.answers.failed(req, err);
    },
  );
};
