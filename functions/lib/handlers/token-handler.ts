/**
 * The token function's handler (the way in), for direct Lambda Invoke and its Function URL: reads the event, finds
 * out who is calling (identity proofs) and what it may have (grants), asks the broker, and answers OAuth-shaped,
 * with one audit line per token handed out or refused.
 */
import type { LambdaFunctionURLResult } from 'aws-lambda';
import { type AuditCaller, auditRefused, DIRECT_INVOKE } from '../broker/audit';
import {
  authorize,
  clientsGrantedTo,
  notGranted,
  principalKeyOf,
  refuseRevoked,
  samePrincipal,
} from '../callers/grants';
import { checkIdentityProof } from '../callers/identity-proof';
import { AccessDeniedError, errorLogFields, type OAuthErrorBody, toOAuthError } from '../shared/errors';
import type { Log, Logger } from '../shared/logger';
import type { MetricsSink } from '../shared/metrics';
import { isFunctionUrlEvent, readUrlEvent, toUrlResponse, type UrlInput } from './function-url';
import { deadlineFor, type HandlerRuntime, type InvocationContext, initRuntime } from './invocation';
import { clientNameFor, readTokenRequest, resolveTokenRequest } from './read-token-request';

export type TokenResponse = TokenAnswer | OAuthErrorBody;
export type { InvocationContext } from './invocation';

import type { TokenAnswer } from '../domain/answer';
import type { Caller, CallerGrant } from '../domain/caller';
import type { CallerAuthMode } from '../domain/settings';

/**
 * Whom the audit lines name before anything is proven. In grants mode nobody: a URL-shaped event's identity is what
 * its sender wrote (a direct invoker can write one), so it is kept apart as `urlCaller` until a proof names the
 * caller. In invoke-permission mode, the identity AWS verified for a Function URL call, or "direct invoke". A claimed
 * identity is logged only as function-url.ts's label: an ARN of bounded length, or `invalid (<n> characters)`.
 */
const initialAudit = (input: UrlInput & { url: boolean }, mode: CallerAuthMode): AuditCaller => {
  if (!input.url) return { caller: DIRECT_INVOKE };
  const claimed = input.claimed === undefined ? {} : { urlCaller: input.claimed };
  if (mode === 'grants') return { caller: 'unproven', ...claimed };
  return input.caller ? { caller: input.caller.arn } : { caller: 'unverified', ...claimed };
};

/**
 * Who is calling. With a proof: the principal STS says signed it (and, on the Function URL, it must be the
 * principal AWS verified for the URL call too). Without one: refused in grants mode; in invoke-permission mode the
 * URL caller AWS verified, or undefined for a direct invoke (which IAM gated, with no identity to check).
 */
const identify = async (
  runtime: HandlerRuntime,
  input: UrlInput & { url: boolean },
  rawProof: unknown,
  deadlineMs: number,
  { audit, metrics }: { audit: AuditCaller; metrics: MetricsSink },
): Promise<Caller | undefined> => {
  const { config } = runtime;
  try {
    if (rawProof === undefined) {
      if (config.callerAuth === 'grants') {
        throw new AccessDeniedError(
          'an identity proof is required: add "identityProof", an STS GetCallerIdentity request signed with your AWS credentials (see the caller\'s guide)',
          'proof_missing',
        );
      }
      return input.url ? input.caller : undefined;
    }
    if (!config.proofPolicy) {
      throw new AccessDeniedError(
        'identity proofs cannot be verified: the broker has no CALLER_PROOF_AUDIENCE',
        'proof_unverifiable',
      );
    }
    const proof = checkIdentityProof(rawProof, config.proofPolicy, runtime.clock.nowMs());
    const { identity, source } = await runtime.callers.verify(proof, deadlineMs);
    metrics.count(source === 'verified' ? 'IdentityVerifications' : 'IdentityCacheHits');
    const proven = identity;
    Object.assign(audit, { caller: proven.arn, identity: source });
    if (!input.url || !input.caller) return proven;
    if (!samePrincipal(input.caller, proven)) {
      audit.urlCaller = input.caller.arn;
      throw new AccessDeniedError(
        'the Function URL caller and the identity proof name different principals',
        'proof_caller_mismatch',
      );
    }
    delete audit.urlCaller; // the URL's identity is the proven principal: the audit line names it once
    // The URL caller is the proven principal: what AWS says of its organization holds (invoke-permission grants).
    return { ...proven, principalOrgId: input.caller.principalOrgId };
  } catch (err) {
    const reason = errorLogFields(err).reason;
    metrics.count('IdentityFailures');
    metrics.count(`IdentityFailure.${reason}`);
    throw err;
  }
};

/**
 * The grants a proven caller is held to, as of now (BROKER_CALLERS, or the callers parameter within its max age). A
 * revoked caller is refused (`caller_revoked`) before any grant is looked at.
 */
const grantsFor = async (
  runtime: HandlerRuntime,
  caller: Caller,
  { log, metrics }: { log: Log; metrics: MetricsSink },
): Promise<readonly CallerGrant[]> => {
  const list = await runtime.callerDirectory.current(log, metrics);
  refuseRevoked(list, caller);
  return list.grants;
};

/**
 * The token function, for direct Lambda Invoke and for its Function URL. Errors are returned, not thrown: bad
 * input is not a function failure and must not trigger Lambda retries. Every caller is identified (identify), checked
 * against the revoked principals and authorized against its grants (grantsFor) before anything is looked up, and
 * gets a token only if every scope it carries is one the caller may hold. Every token handed out and every refusal
 * gets one audit line.
 */
export const createTokenHandler = (makeRuntime: () => HandlerRuntime, fallbackLog: () => Logger) => {
  const runtimeFor = initRuntime(makeRuntime, fallbackLog);

  const handle = async (input: UrlInput & { url: boolean }, context?: InvocationContext): Promise<TokenResponse> => {
    const requestId = context?.awsRequestId;
    const built = runtimeFor(requestId);
    if ('error' in built) return built.error;
    const { runtime } = built;
    // This invocation's own log context and metrics: others may be running in this process at the same time.
    const telemetry = runtime.telemetry.begin(context);
    const { metrics } = telemetry;
    const { config } = runtime;
    const audit = initialAudit(input, config.callerAuth);
    const log = telemetry.log.child({ requestId });
    let asked: { client: string; scopes: readonly string[] } | undefined;
    try {
      const deadlineMs = deadlineFor(runtime.clock.nowMs(), context);
      if (input.refusal) throw input.refusal;
      const read = readTokenRequest(input.payload);
      const caller = await identify(runtime, input, read.identityProof, deadlineMs, { audit, metrics });
      const held = caller && { caller, grants: await grantsFor(runtime, caller, { log, metrics }) };
      // Without a named client, the caller's grants say which one it means (a caller without a grant learns none).
      const clients = held && read.clientName === undefined ? clientsGrantedTo(held.grants, held.caller) : undefined;
      if (clients?.size === 0) throw notGranted(caller!);
      asked = { client: clientNameFor(read, config, clients), scopes: read.scopes };
      const granted = held ? authorize(held.grants, held.caller, asked.client, read.scopes) : undefined;
      const request = resolveTokenRequest(read, config, asked.client);
      const { answer } = await runtime.broker.getToken(request, {
        deadlineMs,
        log,
        metrics,
        caller: audit.caller,
        identity: audit.identity,
        // Only a proof proves a principal: a URL event's identity without one may be what a direct invoker wrote.
        ...(caller && audit.identity ? { principal: principalKeyOf(caller) } : {}),
        allowedScopes: granted ?? request.client.scopes,
      });
      return answer;
    } catch (err) {
      metrics.count('Refusals');
      const body = toOAuthError(err);
      auditRefused(log, { who: audit, asked, body, err });
      return body;
    } finally {
      metrics.flush(runtime.clock.nowMs());
    }
  };

  /**
   * The way in. Never rejects: a rejection is a function error (retried on async invokes) with no answer and no
   * audit line. Whatever escapes `handle` (a bug: every input problem is a refusal inside it) is answered
   * server_error 500 and logged as a refusal on the fallback logger (the runtime may be what failed).
   */
  return async (event: unknown, context?: InvocationContext): Promise<TokenResponse | LambdaFunctionURLResult> => {
    let url = false;
    try {
      if (!isFunctionUrlEvent(event)) return await handle({ payload: event, url: false }, context);
      url = true;
      return toUrlResponse(await handle({ ...readUrlEvent(event), url: true }, context));
    } catch (err) {
      const body = toOAuthError(err);
      try {
        auditRefused(fallbackLog(), {
          who: { caller: url ? 'unverified' : DIRECT_INVOKE },
          body,
          err,
          requestId: context?.awsRequestId,
          describeUnexpected: false,
        });
      } catch {
        // Nothing left to log with; the answer still goes out.
      }
      return url ? toUrlResponse(body) : body;
    }
  };
};
