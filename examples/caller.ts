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
 * Every request proves who is calling: the transports attach `identityProof`, an STS GetCallerIdentity request
 * signed with the caller's own AWS credentials (`signIdentityProof`, below), which the broker replays to STS. The
 * proven principal's grants (the broker's BROKER_CALLERS) decide which scopes it gets, on either way in:
 *   - direct Lambda Invoke (`lambda:InvokeFunction`): `invokeTransport(functionName, lambda?, { credentials?,
 *     region?, audience? })`; the audience defaults to the function's name, the credentials to the default chain;
 *   - the Function URL (`lambda:InvokeFunctionUrl`, and `lambda:InvokeFunction` via the URL), a SigV4-signed POST:
 *     `urlTransport(functionUrl, region, { audience, credentials? })`; the URL does not name the function, so
 *     the audience (the stage's `callerProofAudience`, by default the token function's name) is required.
 * A fresh proof is signed for each request: the client asks the broker only when its own cache misses, and
 * signing costs no request. A proof is a credential for its 5 minutes: never log it or keep it.
 */
import { createHash } from 'node:crypto';
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

/** Credentials or a provider of them; the transports default to the SDK's default chain, made once per transport. */
type Credentials = ProofOptions['credentials'];

/** The function's name from any form Lambda accepts: name, `name:qualifier`, full or partial ARN. */
const functionNameOf = (nameOrArn: string): string =>
  /(?:^|:)function:([^:]+)/.exec(nameOrArn)?.[1] ?? nameOrArn.split(':')[0] ?? nameOrArn;

export interface InvokeProofOptions {
  /** Who the proof says is calling. Default: the SDK's default chain (not the Lambda client's credentials). */
  credentials?: Credentials;
  /** Region of the STS endpoint the proof is signed for. Default: the Lambda client's region. */
  region?: string;
  /** Default: the function's name (the broker's default audience). */
  audience?: string;
  /** Default: `stsUrlFor(region)` (honours AWS_ENDPOINT_URL_STS). */
  stsUrl?: string;
}

/** Direct Lambda Invoke. `lambda` may point elsewhere (the local stack: `npm start` prints its endpoint). */
export const invokeTransport = (
  functionName: string,
  lambda = new LambdaClient({}),
  options: InvokeProofOptions = {},
): Transport => {
  const credentials = options.credentials ?? defaultProvider();
  const audience = options.audience ?? functionNameOf(functionName);
  return async (request) => {
    const region = options.region ?? (await lambda.config.region());
    const identityProof = await signIdentityProof({ credentials, region, audience, stsUrl: options.stsUrl });
    const out = await lambda.send(
      new InvokeCommand({ FunctionName: functionName, Payload: JSON.stringify({ ...request, identityProof }) }),
    );
    // The broker returns its errors; FunctionError means the function itself failed (a bug, or a timeout).
    if (out.FunctionError) throw new TokenBrokerError('server_error', 500, `token broker invocation failed (${out.FunctionError})`);
    return JSON.parse(Buffer.from(out.Payload ?? new Uint8Array()).toString('utf8')) as TokenAnswer | BrokerError;
  };
};

export interface UrlProofOptions {
  /** The broker's audience: the stage's `callerProofAudience`, by default its token function's name. */
  audience: string;
  /** Signs both the URL request and the proof. Default: the SDK's default chain. */
  credentials?: Credentials;
  /** Default: `stsUrlFor(region)` (honours AWS_ENDPOINT_URL_STS). */
  stsUrl?: string;
}

/** The Function URL (AuthType AWS_IAM): a SigV4-signed POST with the caller's own AWS credentials. */
export const urlTransport = (functionUrl: string, region: string, options: UrlProofOptions): Transport => {
  const credentials = options.credentials ?? defaultProvider();
  const signer = new SignatureV4({ service: 'lambda', region, credentials, sha256: Hash.bind(null, 'sha256') });
  const url = new URL(functionUrl);
  return async (request) => {
    const identityProof = await signIdentityProof({ credentials, region, audience: options.audience, stsUrl: options.stsUrl });
    const body = JSON.stringify({ ...request, identityProof });
    const signed = await signer.sign({
      method: 'POST',
      protocol: url.protocol,
      hostname: url.hostname,
      path: url.pathname,
      headers: { host: url.hostname, 'content-type': 'application/json' },
      body,
    });
    const res = await fetch(url, { method: 'POST', headers: signed.headers, body });
    const answer = (await res.json().catch(() => undefined)) as TokenAnswer | BrokerError | undefined;
    // AWS itself refuses an unsigned or unpermitted call before the broker runs, with its own body ({"Message": ...}).
    if (!answer || typeof answer !== 'object' || !('error' in answer || 'access_token' in answer)) {
      throw new TokenBrokerError(res.status === 403 ? 'access_denied' : 'server_error', res.status, `Function URL answered HTTP ${res.status}`);
    }
    return answer;
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
