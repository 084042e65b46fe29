/**
 * The two ways to reach the broker, each attaching a fresh identity proof to every request:
 * - `invokeTransport`: the Lambda Invoke API (`lambda:InvokeFunction`);
 * - `urlTransport`: the Function URL (AuthType AWS_IAM), a SigV4-signed POST (service `lambda`).
 * A transport returns the broker's JSON answer as it came (TokenBrokerClient checks it) and raises
 * `TokenBrokerError` for what kept the answer from coming: a Lambda function error is `server_error`, an
 * unreachable, throttling or silent API `temporarily_unavailable` (retried), a refused invoke `access_denied`.
 * TokenBrokerClient gives each call a `signal` that aborts when its deadline passes; both transports give up then.
 */
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { SignatureV4 } from '@smithy/signature-v4';

import type { TokenRequest } from './answer.js';
import { BROKER_ERRORS, TokenBrokerError } from './errors.js';
import { type Credentials, sha256, signIdentityProof } from './proof.js';

/** What TokenBrokerClient gives a transport with each request. */
export interface TransportOptions {
  /** Aborted when the client's deadline passes: the transport gives up the call (its answer would come too late). */
  signal?: AbortSignal;
}

/** Sends one request to the broker and returns its JSON answer (a token or an OAuth error). */
export type Transport = (request: TokenRequest, options?: TransportOptions) => Promise<unknown>;

/**
 * A call that gets no answer from the default clients within this long is given up (the broker's own limit is 15 s);
 * from TokenBrokerClient, its deadline comes first (10 s by default).
 */
const REQUEST_TIMEOUT_MS = 20_000;
const NETWORK_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
]);

/** The function's name from any form Lambda accepts: name, `name:qualifier`, full or partial ARN. */
export const functionNameOf = (nameOrArn: string): string =>
  /(?:^|:)function:([^:]+)/.exec(nameOrArn)?.[1] ?? nameOrArn.split(':')[0] ?? nameOrArn;

const unavailable = (description: string, cause?: unknown) =>
  new TokenBrokerError(BROKER_ERRORS.temporarilyUnavailable, 503, description, { cause });

const isNetworkError = (err: { name?: string; code?: string; cause?: unknown }): boolean =>
  NETWORK_ERROR_CODES.has(err.code ?? '') ||
  NETWORK_ERROR_CODES.has((err.cause as { code?: string } | undefined)?.code ?? '') ||
  ['TimeoutError', 'RequestTimeout', 'RequestTimeoutException'].includes(err.name ?? '');

/**
 * What a failed Invoke call means for the caller. The Lambda API's errors name the caller and the function, never
 * the payload. Anything that is neither an API answer nor a network failure (no credentials, bad configuration)
 * is not the broker's: it is thrown as it is.
 */
export const invokeFailure = (err: unknown): unknown => {
  if (typeof err !== 'object' || err === null) return err;
  const e = err as {
    name?: string;
    message?: string;
    code?: string;
    cause?: unknown;
    $metadata?: { httpStatusCode?: number };
  };
  const status = e.$metadata?.httpStatusCode;
  const what = `${e.name ?? 'Error'}${e.message ? `: ${e.message}` : ''}`;
  if (status === undefined)
    return isNetworkError(e) ? unavailable(`the Lambda API is unreachable (${what})`, err) : err;
  if (status === 429 || status >= 500) return unavailable(`the Lambda API is unavailable (${what})`, err);
  if (status === 401 || status === 403) {
    return new TokenBrokerError(
      BROKER_ERRORS.accessDenied,
      403,
      `Lambda refused the invoke (${what}); the caller's role needs lambda:InvokeFunction on the token function`,
      { cause: err },
    );
  }
  return new TokenBrokerError(BROKER_ERRORS.invalidRequest, status, `Lambda refused the invoke (${what})`, {
    cause: err,
  });
};

export interface InvokeTransportOptions {
  /**
   * The client that sends the invokes. Default: a LambdaClient of the default region and credentials (made once per
   * transport) that makes one attempt per call (TokenBrokerClient retries, within its deadline).
   *
   * A client you pass sends the invokes only: its credentials sign the Invoke call, never the identity proof. The
   * proof is signed with `credentials` (default: the SDK's default chain), so when this client has other credentials
   * (another role, a profile), pass them as `credentials` too, or the broker sees the default chain's identity (or
   * none). Its own retries (`maxAttempts`, default 3) run inside one attempt of TokenBrokerClient, whose deadline
   * still aborts the call; `maxAttempts: 1` leaves the retries to TokenBrokerClient.
   */
  lambda?: LambdaClient;
  /**
   * Who the proof says is calling. Default: the SDK's default chain, refreshed as it expires (not the credentials of
   * a `lambda` client you pass).
   */
  credentials?: Credentials;
  /** Region of the STS endpoint the proof is signed for. Default: the Lambda client's region. */
  region?: string;
  /** The broker's audience. Default: the function's name (the broker's default audience). */
  audience?: string;
  /** Where the proof is sent. Default: `AWS_ENDPOINT_URL_STS` when set, else the region's STS endpoint. */
  stsUrl?: string;
}

/** Direct Lambda Invoke of the broker's token function (name, `name:alias` or ARN). */
export const invokeTransport = (functionName: string, options: InvokeTransportOptions = {}): Transport => {
  if (!functionName) throw new TypeError('"functionName" must name the token function');
  const lambda =
    options.lambda ??
    new LambdaClient({
      ...(options.region ? { region: options.region } : {}),
      // One attempt per call: TokenBrokerClient retries, within its deadline (the SDK's own retries would not be).
      maxAttempts: 1,
      requestHandler: { requestTimeout: REQUEST_TIMEOUT_MS },
    });
  const credentials = options.credentials ?? defaultProvider();
  const audience = options.audience ?? functionNameOf(functionName);
  return async (request, { signal } = {}) => {
    const region = options.region ?? (await lambda.config.region());
    const identityProof = await signIdentityProof({ credentials, region, audience, stsUrl: options.stsUrl });
    let out;
    try {
      out = await lambda.send(
        new InvokeCommand({
          FunctionName: functionName,
          Payload: new TextEncoder().encode(JSON.stringify({ ...request, identityProof })),
        }),
        { abortSignal: signal },
      );
    } catch (err) {
      if (signal?.aborted) throw unavailable('the Lambda API gave no answer before the deadline', err);
      throw invokeFailure(err);
    }
    // The broker returns its errors as answers; FunctionError means the function itself failed (a bug, a timeout).
    // Its payload (Lambda's errorMessage) is not repeated here.
    if (out.FunctionError) {
      throw new TokenBrokerError(
        BROKER_ERRORS.serverError,
        500,
        `the token broker failed (Lambda function error: ${out.FunctionError})`,
      );
    }
    try {
      return JSON.parse(new TextDecoder().decode(out.Payload ?? new Uint8Array()));
    } catch {
      throw new TokenBrokerError(
        BROKER_ERRORS.serverError,
        502,
        'the token broker answered something that is not JSON',
      );
    }
  };
};

export interface UrlTransportOptions {
  /** The region of the Function URL (its signature) and of the STS endpoint of the proof. */
  region: string;
  /** The broker's audience: the stage's `callerProofAudience`, by default its token function's name. */
  audience: string;
  /** Signs both the URL request and the proof. Default: the SDK's default chain, refreshed as it expires. */
  credentials?: Credentials;
  /** Where the proof is sent. Default: `AWS_ENDPOINT_URL_STS` when set, else the region's STS endpoint. */
  stsUrl?: string;
  /** Default 20 s; from TokenBrokerClient, its deadline comes first (10 s by default). */
  timeoutMs?: number;
}

/** Loopback hosts, as the URL parser writes them: 127.0.0.0/8, ::1, localhost. */
const isLoopbackHost = (hostname: string): boolean =>
  hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);

/**
 * The Function URL, parsed: https, or plain http to a loopback host only (a local broker). Anywhere else plain http
 * would carry the identity proof and the token in clear.
 */
const functionUrlOf = (functionUrl: string): URL => {
  let url: URL;
  try {
    url = new URL(functionUrl);
  } catch {
    throw new TypeError('"functionUrl" must be an absolute URL (the broker\'s Function URL)');
  }
  if (url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname))) return url;
  throw new TypeError(
    '"functionUrl" must be https (plain http only to a loopback host: 127.0.0.0/8, ::1, localhost); ' +
      'elsewhere the identity proof and the token would cross the network in clear',
  );
};

const isBrokerAnswer = (value: unknown): boolean =>
  typeof value === 'object' && value !== null && ('error' in value || 'access_token' in value);

/**
 * The broker's Function URL (AuthType AWS_IAM): a SigV4-signed POST with the caller's own credentials. The URL must be
 * https (plain http only to a loopback host, for a local broker).
 */
export const urlTransport = (functionUrl: string, options: UrlTransportOptions): Transport => {
  const url = functionUrlOf(functionUrl);
  if (!options?.region) throw new TypeError('"region" must be the Function URL\'s region');
  if (!options.audience)
    throw new TypeError('"audience" must be the broker\'s audience (the URL does not name the function)');
  const { region, audience } = options;
  const credentials = options.credentials ?? defaultProvider();
  const signer = new SignatureV4({ service: 'lambda', region, credentials, sha256 });
  return async (request, { signal } = {}) => {
    const identityProof = await signIdentityProof({ credentials, region, audience, stsUrl: options.stsUrl });
    const body = JSON.stringify({ ...request, identityProof });
    const signed = await signer.sign({
      method: 'POST',
      protocol: url.protocol,
      hostname: url.hostname,
      port: url.port ? Number(url.port) : undefined,
      path: url.pathname,
      headers: { host: url.host, 'content-type': 'application/json' },
      body,
    });
    const timeout = AbortSignal.timeout(options.timeoutMs ?? REQUEST_TIMEOUT_MS);
    // Covers the answer's body too: fetch aborts its reading.
    const fetchSignal = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const late = (err: unknown) =>
      unavailable(
        `the Function URL gave no answer ${signal?.aborted ? 'before the deadline' : `within ${options.timeoutMs ?? REQUEST_TIMEOUT_MS} ms`}`,
        err,
      );
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: signed.headers as Record<string, string>,
        body,
        signal: fetchSignal,
        redirect: 'manual',
      });
    } catch (err) {
      if (fetchSignal.aborted) throw late(err);
      throw unavailable(`the Function URL is unreachable (${(err as Error).name})`, err);
    }
    const answer: unknown = await res.json().catch((err: unknown) => {
      if (fetchSignal.aborted) throw late(err);
      return undefined;
    });
    if (isBrokerAnswer(answer)) return answer;
    // AWS itself answered (an unsigned or unpermitted call, throttling) before the broker ran: {"Message": ...}.
    if (res.status === 403 || res.status === 401) {
      throw new TokenBrokerError(
        BROKER_ERRORS.accessDenied,
        403,
        `the Function URL refused the call (HTTP ${res.status}); the caller's role needs lambda:InvokeFunctionUrl and lambda:InvokeFunction via the URL`,
      );
    }
    if (res.status === 429 || res.status >= 500) throw unavailable(`the Function URL answered HTTP ${res.status}`);
    throw new TokenBrokerError(
      BROKER_ERRORS.serverError,
      502,
      `the Function URL answered HTTP ${res.status} without a broker answer`,
    );
  };
};
