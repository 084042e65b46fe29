/**
 * What the two Lambda handlers (token-handler.ts, prewarm-handler.ts) share about an invocation: the container's
 * runtime, built once in the init phase (when the handler module loads, before the first invocation), with the
 * answer every invocation gets when the configuration is invalid; and the invocation's deadline.
 */
import type { Context } from 'aws-lambda';
import type { TokenBroker } from '../broker/token-broker';
import type { BrokerConfig } from '../domain/settings';
import type { CallerDirectory, IdentityVerifier } from '../ports';
import type { Clock } from '../shared/clock';
import { errorLogFields, type OAuthErrorBody } from '../shared/errors';
import type { Logger } from '../shared/logger';
import type { Telemetry } from '../shared/telemetry';

/**
 * What a handler needs of its container, built once by the composition root (runtime.ts), which is the only module
 * that knows the adapters. Only what is the container's: one process may serve several invocations at once (Lambda
 * Managed Instances), so what belongs to one invocation (its log context, its metrics) is opened per invocation
 * (`telemetry.begin`) and passed down, never kept here.
 */
export interface HandlerRuntime {
  config: BrokerConfig;
  broker: TokenBroker;
  clock: Clock;
  /** Opens each invocation's own logger (its Lambda context on every line) and metrics (flushed when it ends). */
  telemetry: Telemetry;
  /** Verifies callers' identity proofs (one STS call per proof per container). */
  callers: IdentityVerifier;
  /** Who may get which tokens and who is revoked, as of now (BROKER_CALLERS or the callers parameter). */
  callerDirectory: CallerDirectory;
}

export type InvocationContext = Partial<Pick<Context, 'awsRequestId' | 'getRemainingTimeInMillis'>>;

/** Kept free at the end of an invocation to answer cleanly instead of timing out. */
export const DEADLINE_MARGIN_MS = 500;
/** Time budget when the caller gives no Lambda context (tests, local tools). */
const DEFAULT_BUDGET_MS = 10_000;

/** Epoch ms by which the answer must be ready: the Lambda's remaining time less a safety margin. */
export const deadlineFor = (nowMs: number, context: InvocationContext | undefined): number =>
  nowMs + (context?.getRemainingTimeInMillis?.() ?? DEFAULT_BUDGET_MS) - DEADLINE_MARGIN_MS;

const misconfigured = (requestId: string | undefined): OAuthErrorBody => ({
  error: 'server_error',
  error_description: `the broker is misconfigured; the platform team can find the cause in its logs${requestId ? ` (request id ${requestId})` : ''}`,
  status: 500,
});

/**
 * Builds the container's runtime now (the handler module's load: Lambda's init phase, so the first invocation does
 * not pay for it) and returns its accessor. If the configuration is invalid, every invocation is answered
 * `server_error` 500 "the broker is misconfigured" with its request id, before any authorization: the detail
 * (which setting, which client) goes to the log only, each time, never to a caller.
 */
export const initRuntime = (makeRuntime: () => HandlerRuntime, fallbackLog: () => Logger) => {
  let built: { runtime: HandlerRuntime } | { error: unknown };
  try {
    built = { runtime: makeRuntime() };
  } catch (error) {
    built = { error };
  }
  return (requestId: string | undefined): { runtime: HandlerRuntime } | { error: OAuthErrorBody } => {
    if ('runtime' in built) return built;
    fallbackLog().error('broker configuration invalid', { requestId, ...errorLogFields(built.error) });
    return { error: misconfigured(requestId) };
  };
};
