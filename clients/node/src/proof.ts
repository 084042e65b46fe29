/**
 * The identity proof the broker asks for with every request: an STS GetCallerIdentity request signed (SigV4,
 * service `sts`) with the caller's own credentials, which the broker replays to STS to learn who is calling. The
 * signed header `x-limitrail-broker-audience` names the broker it is meant for, so a proof made for one broker is
 * useless to another. A proof is a credential for its 5 minutes: it is never logged, kept or put in an error.
 */
import { Hash } from '@smithy/core/serde';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';

export interface IdentityProof {
  url: string;
  headers: Record<string, string>;
  body: string;
}

/** The caller's credentials, or a provider of them (such as the default chain, which refreshes them). */
export type Credentials = AwsCredentialIdentity | AwsCredentialIdentityProvider;

export const PROOF_AUDIENCE_HEADER = 'x-limitrail-broker-audience';
export const GET_CALLER_IDENTITY = 'Action=GetCallerIdentity&Version=2011-06-15';

/**
 * Where proofs are sent, by the broker's own rule: `AWS_ENDPOINT_URL_STS` when set (local runs, tests: the broker
 * accepts only that origin then), else the region's STS endpoint.
 */
export const stsUrlFor = (region: string, env: NodeJS.ProcessEnv = process.env): string => {
  const override = env.AWS_ENDPOINT_URL_STS;
  if (override) return new URL('/', override).toString();
  if (!/^[a-z]{2}(-[a-z0-9]+)+-\d+$/.test(region))
    throw new TypeError(`"region" must be an AWS region name such as eu-central-1`);
  return region.startsWith('cn-') ? `https://sts.${region}.amazonaws.com.cn/` : `https://sts.${region}.amazonaws.com/`;
};

export interface ProofOptions {
  credentials: Credentials;
  /** The region of the STS endpoint (and of the signature). */
  region: string;
  /** The broker's audience: its token function's name unless the stage set `callerProofAudience`. */
  audience: string;
  /** Default: `stsUrlFor(region)`. */
  stsUrl?: string;
  /** Sign as of this time (tests); default now. */
  signingDate?: Date;
}

/** The SDK's own SHA-256 (`@smithy/core`), for every signer in this package. */
export const sha256 = Hash.bind(null, 'sha256');

/** Signs a fresh identity proof. */
export const signIdentityProof = async (options: ProofOptions): Promise<IdentityProof> => {
  if (!options.audience) throw new TypeError('"audience" must name the broker (its token function name by default)');
  const url = new URL(options.stsUrl ?? stsUrlFor(options.region));
  const signer = new SignatureV4({ service: 'sts', region: options.region, credentials: options.credentials, sha256 });
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
