/**
 * The LimitRail token endpoint client (RFC 6749 section 4.4, client_credentials): send, then validate the answer
 * as untrusted. `interpretTokenResponse` is pure; `requestToken` does the HTTP.
 */

import type { TokenParams } from '../domain/settings';
import { isRecord } from '../shared/assert';
import type { Clock } from '../shared/clock';
import { InvalidScopeError, quote, UnavailableError, UpstreamError } from '../shared/errors';
import { missingScopes, parseScopeString, scopeString } from '../shared/scopes';
import type { ClientAuthentication } from './client-auth';

/** What the endpoint granted, validated. */
export interface IssuedToken {
  accessToken: string;
  expiresInSec: number;
  /** Canonical granted scopes. */
  scopes: string[];
}

export interface RawTokenResponse {
  status: number;
  headers: { get(name: string): string | null };
  bodyText: string;
}

export interface TokenRequestContext {
  clientName: string;
  /**
   * What authenticated the request, as an invalid_client description names it (`the client credentials in secret
   * "x"`, `the client assertion (private_key_jwt) ...`): ids only, never a secret or an assertion.
   */
  credentials: string;
  /** Canonical requested scopes. */
  scopes: readonly string[];
  /** The client's `audience` and `resource` parameters, sent with every request. */
  tokenParams?: TokenParams;
}

/** Longest body read from the endpoint; a token answer is a few KiB at most. */
export const MAX_RESPONSE_BYTES = 64 * 1024;
/** Longest lifetime the broker believes, whatever the endpoint says (one day). */
export const MAX_TOKEN_LIFETIME_SEC = 86_400;

const VISIBLE_ASCII = /^[\x21-\x7E]+$/;
const SAFE_DETAIL = /^[A-Za-z0-9._:/+=-]{1,100}$/;

const safeDetail = (value: unknown): string | undefined =>
  typeof value === 'string' && SAFE_DETAIL.test(value) ? value : undefined;

const parseJsonObject = (text: string): Record<string, unknown> | undefined => {
  try {
    const value: unknown = JSON.parse(text);
    return isRecord(value) ? value : undefined;
  } catch {
    return undefined;
  }
};

const parseExpiresIn = (value: unknown): number | undefined => {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  return typeof n === 'number' && Number.isFinite(n) && n >= 1
    ? Math.min(Math.floor(n), MAX_TOKEN_LIFETIME_SEC)
    : undefined;
};

const garbage = (what: string) =>
  new UpstreamError(`the token endpoint answered 200 with ${what}`, 'upstream_malformed_response');

const interpretSuccess = (body: Record<string, unknown> | undefined, ctx: TokenRequestContext): IssuedToken => {
  if (!body) throw garbage('a body that is not a JSON object');
  const { access_token: accessToken, token_type: tokenType, scope } = body;
  if (typeof accessToken !== 'string' || accessToken === '') throw garbage('no "access_token"');
  if (!VISIBLE_ASCII.test(accessToken)) throw garbage('an "access_token" that is not printable ASCII');
  if (typeof tokenType !== 'string' || tokenType.toLowerCase() !== 'bearer') {
    throw garbage(`"token_type" ${typeof tokenType === 'string' ? quote(tokenType, 32) : 'missing'}; expected Bearer`);
  }
  const expiresInSec = parseExpiresIn(body.expires_in);
  if (expiresInSec === undefined) throw garbage('no positive "expires_in"');
  if (scope !== undefined && typeof scope !== 'string') throw garbage('a "scope" that is not a string');
  const granted = scope === undefined ? [...ctx.scopes] : parseScopeString(scope);
  const missing = missingScopes(ctx.scopes, granted);
  if (missing.length > 0) {
    throw new InvalidScopeError(
      `the token endpoint granted client ${quote(ctx.clientName)} less than requested: missing ${quote(scopeString(missing), 256)}`,
      'upstream_scope_narrowed',
    );
  }
  return { accessToken, expiresInSec, scopes: granted };
};

/** Builds "(invalid_scope, HTTP 400, field scope, traceId abc)" from what the error body says. */
const upstreamDetails = (status: number, body: Record<string, unknown> | undefined, traceHeader: string | null) => {
  const code = safeDetail(body?.error) ?? safeDetail(body?.errorCode);
  const traceId = safeDetail(body?.traceId) ?? safeDetail(traceHeader);
  const parts = [code, `HTTP ${status}`];
  const field = safeDetail(body?.field);
  if (field) parts.push(`field ${field}`);
  const resourceKey = safeDetail(body?.resourceKey);
  if (resourceKey) parts.push(`resourceKey ${resourceKey}`);
  if (traceId) parts.push(`traceId ${traceId}`);
  return { code: code?.toLowerCase().replace(/[^a-z0-9]/g, ''), text: `(${parts.filter(Boolean).join(', ')})` };
};

/**
 * Maps an endpoint answer to a grant or a broker error. Error bodies come in two shapes: RFC 6749 section 5.2
 * (`error`, `error_description`) and LimitRail's ProblemDetails (`errorCode`, `resourceKey`, `traceId`, `field`).
 * Only codes and ids are kept from them, never free text.
 */
export const interpretTokenResponse = (res: RawTokenResponse, ctx: TokenRequestContext, nowMs: number): IssuedToken => {
  const body = parseJsonObject(res.bodyText);
  if (res.status >= 200 && res.status < 300) return interpretSuccess(body, ctx);
  if (res.status >= 300 && res.status < 400) {
    throw new UpstreamError(
      `the token endpoint answered a redirect (HTTP ${res.status}); redirects are not followed`,
      'upstream_redirect',
    );
  }
  const { code, text } = upstreamDetails(res.status, body, res.headers.get('x-trace-id'));
  if (code === 'invalidclient' || (res.status === 401 && code === undefined)) {
    throw new UpstreamError(`the token endpoint rejected ${ctx.credentials} ${text}`, 'upstream_invalid_client');
  }
  if (code === 'invalidscope') {
    throw new InvalidScopeError(
      `the token endpoint refused scope ${quote(scopeString(ctx.scopes), 256)} for client ${quote(ctx.clientName)} ${text}`,
      'upstream_invalid_scope',
    );
  }
  const retryAfterMs = parseRetryAfterMs(res.headers.get('retry-after'), nowMs);
  const after = retryAfterMs === undefined ? '' : `, retry after ${Math.ceil(retryAfterMs / 1000)} s`;
  if (res.status === 429) {
    throw new UnavailableError(
      `the token endpoint is rate limiting the broker ${text}${after}`,
      'upstream_rate_limited',
      { retryAfterMs },
    );
  }
  if (res.status >= 500)
    throw new UnavailableError(`the token endpoint failed ${text}${after}`, 'upstream_unavailable', { retryAfterMs });
  throw new UpstreamError(`the token endpoint refused the token request ${text}`, 'upstream_refused');
};

/** Retry-After (RFC 9110): delay in seconds or an HTTP date; undefined when absent or unreadable. */
export const parseRetryAfterMs = (value: string | null, nowMs: number): number | undefined => {
  if (value === null || value.trim() === '') return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
};

/**
 * A client_credentials request: `grant_type`, the client's authentication (form fields, or an Authorization header
 * for client_secret_basic), `scope`, then the client's `audience` and each `resource` (RFC 8707).
 */
export const tokenRequest = (
  auth: ClientAuthentication,
  scopes: readonly string[],
  tokenParams: TokenParams = {},
): { body: string; headers: Record<string, string> } => {
  const form = new URLSearchParams({ grant_type: 'client_credentials' });
  const headers: Record<string, string> = {
    'content-type': 'application/x-www-form-urlencoded',
    accept: 'application/json',
  };
  auth.applyTo(form, headers);
  form.append('scope', scopeString(scopes));
  if (tokenParams.audience !== undefined) form.append('audience', tokenParams.audience);
  for (const resource of tokenParams.resource ?? []) form.append('resource', resource);
  return { body: form.toString(), headers };
};

const readBounded = async (response: Response): Promise<string> => {
  if (!response.body) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.byteLength;
    if (bytes > MAX_RESPONSE_BYTES) {
      await reader.cancel().catch(() => undefined);
      throw new UpstreamError(
        `the token endpoint answered HTTP ${response.status} with more than ${MAX_RESPONSE_BYTES} bytes`,
        'upstream_response_too_large',
      );
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
};

const describeFetchFailure = (err: unknown, timeoutMs: number): UnavailableError => {
  const e = err as { name?: string; cause?: { code?: unknown } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') {
    return new UnavailableError(`the token endpoint did not answer within ${timeoutMs} ms`, 'upstream_timeout', {
      cause: err,
    });
  }
  const code = safeDetail(e?.cause?.code);
  return new UnavailableError(
    `the token endpoint could not be reached${code ? ` (${code})` : ''}`,
    'upstream_unreachable',
    { cause: err },
  );
};

/**
 * POSTs a client_credentials request, authenticated by `auth`. Whole exchange bounded by `timeoutMs`; redirects
 * are not followed. `clock` dates the answer (a Retry-After given as an HTTP date).
 */
export const requestToken = async (
  tokenUrl: string,
  auth: ClientAuthentication,
  ctx: TokenRequestContext,
  timeoutMs: number,
  clock: Clock,
): Promise<IssuedToken> => {
  let raw: RawTokenResponse;
  const { body, headers } = tokenRequest(auth, ctx.scopes, ctx.tokenParams);
  try {
    const response = await fetch(tokenUrl, {
      method: 'POST',
      headers,
      body,
      redirect: 'manual',
      signal: AbortSignal.timeout(timeoutMs),
    });
    raw = { status: response.status, headers: response.headers, bodyText: await readBounded(response) };
  } catch (err) {
    if (err instanceof UpstreamError) throw err;
    throw describeFetchFailure(err, timeoutMs);
  }
  return interpretTokenResponse(raw, ctx, clock.nowMs());
};
