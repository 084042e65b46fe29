/**
 * How a microservice gets LimitRail tokens from the broker: a small client to copy into a service. It keeps the
 * token in memory until shortly before it expires, and handles LimitRail's 401 with one forced refresh.
 *
 *   const broker = new TokenBrokerClient(invokeTransport('limitrail-token-broker-prod-token'));
 *   const token = await broker.token(['limitrail.usage.write']);
 *   let res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
 *   if (res.status === 401) {
 *     const fresh = await broker.tokenAfter401(['limitrail.usage.write'], token);
 *     res = await fetch(url, { headers: { authorization: `Bearer ${fresh}` } }); // once; do not loop
 *   }
 *
 * Two transports: direct Lambda Invoke (`lambda:InvokeFunction`), or the Function URL with SigV4-signed
 * requests (`lambda:InvokeFunctionUrl`; scopes limited by the broker's BROKER_CALLERS grants).
 */
import { createHash, createHmac } from 'node:crypto';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { SignatureV4 } from '@smithy/signature-v4';

export interface TokenRequest {
  scopes: string[];
  client?: string;
  minTtlSeconds?: number;
  forceRefresh?: boolean;
  rejectedTokenSha256?: string;
}
export interface TokenAnswer {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  expires_at: string;
  scope: string;
  client: string;
  stale?: true;
}
export interface BrokerError {
  error: string;
  error_description: string;
  status: number;
}
export type Transport = (request: TokenRequest) => Promise<TokenAnswer | BrokerError>;

/** The broker's refusal or failure, with its OAuth error code (`temporarily_unavailable` is worth a retry). */
export class TokenBrokerError extends Error {
  constructor(readonly error: string, readonly status: number, description: string) {
    super(`${error}: ${description}`);
    this.name = 'TokenBrokerError';
  }
}

/** Direct Lambda Invoke. `lambda` may point elsewhere (the local stack: `npm start` prints its endpoint). */
export const invokeTransport = (functionName: string, lambda = new LambdaClient({})): Transport => async (request) => {
  const out = await lambda.send(new InvokeCommand({ FunctionName: functionName, Payload: JSON.stringify(request) }));
  // The broker returns its errors; FunctionError means the function itself failed (a bug, or a timeout).
  if (out.FunctionError) throw new TokenBrokerError('server_error', 500, `token broker invocation failed (${out.FunctionError})`);
  return JSON.parse(Buffer.from(out.Payload ?? new Uint8Array()).toString('utf8')) as TokenAnswer | BrokerError;
};

/** SHA-256 for the SigV4 signer, from node:crypto. */
class Sha256 {
  #hash: ReturnType<typeof createHash>;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.#hash = secret === undefined ? createHash('sha256') : (createHmac('sha256', toBuffer(secret)) as unknown as ReturnType<typeof createHash>);
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.#hash.update(toBuffer(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.#hash.digest());
  }
}
const toBuffer = (data: string | ArrayBuffer | ArrayBufferView): Buffer =>
  typeof data === 'string'
    ? Buffer.from(data)
    : ArrayBuffer.isView(data)
      ? Buffer.from(data.buffer, data.byteOffset, data.byteLength)
      : Buffer.from(data);

/** The Function URL (AuthType AWS_IAM): a SigV4-signed POST with the caller's own AWS credentials. */
export const urlTransport = (functionUrl: string, region: string): Transport => {
  const signer = new SignatureV4({ service: 'lambda', region, credentials: defaultProvider(), sha256: Sha256 });
  const url = new URL(functionUrl);
  return async (request) => {
    const body = JSON.stringify(request);
    const signed = await signer.sign({
      method: 'POST',
      protocol: url.protocol,
      hostname: url.hostname,
      path: url.pathname,
      headers: { host: url.hostname, 'content-type': 'application/json' },
      body,
    });
    const res = await fetch(url, { method: 'POST', headers: signed.headers, body });
    return (await res.json()) as TokenAnswer | BrokerError;
  };
};

const sha256Hex = (text: string) => createHash('sha256').update(text).digest('hex');

export class TokenBrokerClient {
  readonly #cache = new Map<string, { token: string; refreshAtMs: number }>();

  /** `marginSec`: stop using a token this long before it expires (default 60 s). */
  constructor(
    private readonly transport: Transport,
    private readonly marginSec = 60,
  ) {}

  /** A bearer token for these scopes, from memory while it has more than `marginSec` left. */
  async token(scopes: string[]): Promise<string> {
    const key = [...new Set(scopes)].sort().join(' ');
    const cached = this.#cache.get(key);
    if (cached && Date.now() < cached.refreshAtMs) return cached.token;
    return this.#ask({ scopes, minTtlSeconds: this.marginSec }, key);
  }

  /** After LimitRail answered 401 to `rejected`: a token that is not `rejected` (one upstream request per herd). */
  async tokenAfter401(scopes: string[], rejected: string): Promise<string> {
    const key = [...new Set(scopes)].sort().join(' ');
    this.#cache.delete(key);
    return this.#ask({ scopes, forceRefresh: true, rejectedTokenSha256: sha256Hex(rejected) }, key);
  }

  async #ask(request: TokenRequest, key: string): Promise<string> {
    const answer = await this.transport(request);
    if ('error' in answer) throw new TokenBrokerError(answer.error, answer.status, answer.error_description);
    this.#cache.set(key, { token: answer.access_token, refreshAtMs: Date.now() + (answer.expires_in - this.marginSec) * 1000 });
    return answer.access_token;
  }
}
