/**
 * The smoke test of a deployed stage: `npm run token -- --stage <stage> --scopes a,b [--region R] [--profile P]`.
 *
 * Asks the stage's token function (`<service>-<stage>-token`, the service name from serverless.yml) for a token the way
 * a service does, with the client package's invoke transport and YOUR AWS credentials (the default chain, or
 * --profile): an identity proof signed for the stage's audience (the function's name unless --audience), then Lambda
 * Invoke. Prints who you are, the scopes granted, the client and when the token expires; the token itself only with
 * --show-token. Exits 0 with a token, 1 when the broker (or Lambda) refuses or fails, 2 on usage errors and when
 * the stage cannot be reached (no credentials, no region, no such function).
 *
 * Who you are: the broker's answer names no caller, so this asks STS (GetCallerIdentity) with the same credentials,
 * at the same STS the proof is signed for. That is the principal the broker proves by replaying the proof, and the
 * one its grants (brokerCallers) must name; a refusal's description names it too.
 *
 * The same code path runs against the local stack: with .local/caller.env loaded (its AWS_ENDPOINT_URL_LAMBDA and
 * AWS_ENDPOINT_URL_STS), `--stage local --profile granted` (test/integration/local-start.test.ts).
 */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { invokeTransport, TokenBrokerError } from '@limitrail/token-broker-client';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

export interface StageRequest {
  stage: string;
  region?: string;
  profile?: string;
  /** Default: `<service>-<stage>-token`. */
  functionName?: string;
  /** Default: the function's name (the stage's callerProofAudience default). */
  audience?: string;
  event: { scopes: string[]; client?: string; minTtlSeconds?: number };
  showToken: boolean;
}

export interface Output {
  out: (line: string) => void;
  err: (line: string) => void;
}

/** The service name serverless.yml declares (`service: limitrail-token-broker`). */
export const serviceName = async (root = ROOT): Promise<string> => {
  const yml = await readFile(join(root, 'serverless.yml'), 'utf8');
  const name = /^service:\s*([A-Za-z0-9-]+)\s*$/m.exec(yml)?.[1];
  if (!name) throw new Error('serverless.yml names no service');
  return name;
};

const describe = (err: unknown): string =>
  err instanceof Error ? `${err.name === 'Error' ? '' : `${err.name}: `}${err.message}` : String(err);

/** Runs the smoke test; returns the exit code. Never prints a proof or credentials, nor the token without showToken. */
export const smokeTest = async (request: StageRequest, { out, err }: Output): Promise<number> => {
  const functionName = request.functionName ?? `${await serviceName()}-${request.stage}-token`;
  const audience = request.audience ?? functionName;
  const credentials = defaultProvider(request.profile ? { profile: request.profile } : {});
  const config = {
    ...(request.region ? { region: request.region } : {}),
    ...(request.profile ? { profile: request.profile } : {}),
    credentials,
    maxAttempts: 1,
  };
  const lambda = new LambdaClient(config);
  const sts = new STSClient(config);
  try {
    let region: string;
    try {
      region = await lambda.config.region();
    } catch {
      err('No AWS region: pass --region, or set AWS_REGION or a region in your profile.');
      return 2;
    }
    out(`stage ${request.stage}: ${functionName} in ${region} (proof audience ${audience})`);
    let arn: string;
    try {
      arn = (await sts.send(new GetCallerIdentityCommand({}))).Arn ?? '(no ARN)';
    } catch (e) {
      err(`Your AWS credentials do not work${request.profile ? ` (profile ${request.profile})` : ''}: ${describe(e)}`);
      return 2;
    }
    out(
      `caller:   ${arn} (STS GetCallerIdentity with the credentials that sign the proof: the principal the broker proves)`,
    );
    let answer: unknown;
    try {
      answer = await invokeTransport(functionName, { lambda, credentials, region, audience })(request.event);
    } catch (e) {
      if (!(e instanceof TokenBrokerError)) throw e;
      if (e.status === 404) {
        err(
          `No function ${functionName} in ${region}: is the stage deployed there? (--region, --stage) ${e.description}`,
        );
        return 2;
      }
      err(JSON.stringify({ error: e.error, error_description: e.description, status: e.status }, null, 2));
      return 1;
    }
    const a = (answer ?? {}) as Record<string, unknown>;
    if (typeof a.error === 'string' || typeof a.access_token !== 'string') {
      err(JSON.stringify(answer, null, 2));
      return 1;
    }
    const token = a.access_token;
    out(`client:   ${String(a.client)}`);
    out(`scopes:   ${String(a.scope)}${a.stale ? ' (stale: the token endpoint is failing; ask again soon)' : ''}`);
    out(`expires:  ${String(a.expires_at)} (in ${String(a.expires_in)} s)`);
    out(`token:    ${request.showToken ? token : `${token.length} characters, not shown (--show-token shows it)`}`);
    return 0;
  } finally {
    lambda.destroy();
    sts.destroy();
  }
};
