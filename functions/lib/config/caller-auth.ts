/** How callers are authorized (CALLER_AUTH) and the identity-proof policy (CALLER_PROOF_AUDIENCE, STS endpoint). */
import { type ProofPolicy, partitionOf, stsOriginFrom } from '../domain/proof';
import type { CallerAuthMode } from '../domain/settings';
import { invalidConfiguration as fail } from '../shared/errors';
import { ENV } from './env-names';

export const parseCallerAuth = (env: NodeJS.ProcessEnv): CallerAuthMode => {
  const raw = env[ENV.callerAuth]?.trim() || 'grants';
  return raw === 'grants' || raw === 'invoke-permission'
    ? raw
    : fail(`${ENV.callerAuth} must be "grants" or "invoke-permission"`);
};

/** The audience proofs must name: CALLER_PROOF_AUDIENCE, else the function's own name (required in grants mode). */
export const parseProofPolicy = (env: NodeJS.ProcessEnv, mode: CallerAuthMode): ProofPolicy | undefined => {
  const audience = env[ENV.callerProofAudience]?.trim() || env.AWS_LAMBDA_FUNCTION_NAME?.trim() || undefined;
  if (audience === undefined) {
    return mode === 'grants' ? fail(`${ENV.callerProofAudience} is not set (nor AWS_LAMBDA_FUNCTION_NAME)`) : undefined;
  }
  if (!/^[\x21-\x7E]{1,256}$/.test(audience))
    fail(`${ENV.callerProofAudience} must be 1 to 256 printable characters without spaces`);
  const endpoint = env.AWS_ENDPOINT_URL_STS;
  const stsOrigin = stsOriginFrom(endpoint);
  if (endpoint !== undefined && endpoint.trim() !== '' && stsOrigin === undefined)
    fail('AWS_ENDPOINT_URL_STS is not an absolute URL');
  return { audience, stsOrigin, partition: partitionOf(env.AWS_REGION) };
};
