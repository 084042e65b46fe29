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
import { Hash } from '@smithy/core/serde';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity, Provider } from '@smithy/types';

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

/**
 * The identity proof the broker asks for on every request: an STS GetCallerIdentity request signed (SigV4, service
 * `sts`) with the caller's own credentials, which the broker replays to STS to learn who is calling. The header
 * `x-limitrail-broker-audience` (signed) names the broker it is meant for, so a proof made for one broker is
 * useless to another. A proof is a credential for its 5 minutes: never log it or keep it.
 */
export interface IdentityProof {
  url: string;
  headers: Record<string, string>;
  body: string;
}

export const PROOF_AUDIENCE_HEADER = 'x-limitrail-broker-audience';
const GET_CALLER_IDENTITY = 'Action=GetCallerIdentity&Version=2011-06-15';

/** Where proofs are sent: `AWS_ENDPOINT_URL_STS` when set (local runs), else the region's STS endpoint. */
export const stsUrlFor = (region: string, env: NodeJS.ProcessEnv = process.env): string =>
  env.AWS_ENDPOINT_URL_STS ? new URL('/', env.AWS_ENDPOINT_URL_STS).toString() : `https://sts.${region}.amazonaws.com/`;

export interface ProofOptions {
  /** The caller's own credentials (or a provider of them, such as the default chain). */
  credentials: AwsCredentialIdentity | Provider<AwsCredentialIdentity>;
  /** The region of the STS endpoint (and of the signature). */
  region: string;
  /** The broker's audience: its token function's name unless the stage set `callerProofAudience`. */
  audience: string;
  /** Default: `stsUrlFor(region)`. */
  stsUrl?: string;
  /** Sign as of this time (tests); default now. */
  signingDate?: Date;
}

/** Signs a fresh identity proof. Hash: the AWS SDK's own SHA-256 (`@smithy/core`), not a hand-written one. */
export const signIdentityProof = async (options: ProofOptions): Promise<IdentityProof> => {
  const url = new URL(options.stsUrl ?? stsUrlFor(options.region));
  const signer = new SignatureV4({
    service: 'sts',
    region: options.region,
    credentials: options.credentials,
    sha256: Hash.bind(null, 'sha256'),
  });
  const signed = await signer.sign(
    {
      method: 'POST',
      protocol: url.protocol,
      hostname: url.hostname,
      port: url.port ? Number(url.port) : undefined,
      path: '/',
      headers: {
        host: url.host,
        'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
        [PROOF_AUDIENCE_HEADER]: options.audience,
      },
      body: GET_CALLER_IDENTITY,
    },
    options.signingDate ? { signingDate: options.signingDate } : {},
  );
  return { url: url.toString(), headers: { ...(signed.headers as Record<string, string>) }, body: GET_CALLER_IDENTITY };
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
