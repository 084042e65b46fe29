/**
 * `npm run jwks`: the JWK Set to register with an identity provider for private_key_jwt clients, read from KMS.
 *
 *   npm run jwks -- --key <key or alias ARN> [--key <ARN> ...] [--alg RS256|PS256|ES256] [--region R]
 *   npm run jwks -- --local                  (the signing key of the running `npm start` stack)
 *
 * For each key, KMS GetPublicKey (the public key is not secret: no private key ever leaves KMS); prints
 * `{"keys":[{kty, ..., kid, alg, use: "sig"}]}` on stdout, in the order given. `kid` is the RFC 7638 thumbprint the
 * broker puts in each assertion's header and `alg` the key spec's default (RS256 for RSA, ES256 for P-256) unless
 * --alg says otherwise: the same code as the token function (functions/lib/upstream/jwk.ts, KmsAssertionSigner),
 * so what is published is what the broker signs with. List every key of a client's `signingKeyId` during a rotation
 * (docs/deploy.md, "Rotating a signing key without downtime").
 *
 * AWS credentials and region: the SDK's default chain (AWS_PROFILE, AWS_REGION, ...); AWS_ENDPOINT_URL(_KMS) points it
 * at another KMS (moto). Exit codes: 0 printed; 1 KMS refused or failed; 2 usage.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { KMSClient } from '@aws-sdk/client-kms';

import { ASSERTION_ALGORITHMS, type AssertionAlgorithm } from '../functions/lib/domain/settings';
import { systemClock } from '../functions/lib/shared/clock';
import { BrokerError } from '../functions/lib/shared/errors';
import { jwkSet } from '../functions/lib/upstream/jwk';
import { KmsAssertionSigner } from '../functions/lib/upstream/kms-assertion-signer';
import type { LocalStack } from './token-cli';
import { STACK_FILE } from './token-cli';

const USAGE = `usage: npm run jwks -- --key <KMS key or alias ARN> [--key <ARN> ...] [--alg ${ASSERTION_ALGORITHMS.join('|')}] [--region R]
       npm run jwks -- --local   (the running npm start stack's signing key)`;

class UsageError extends Error {}

interface JwksRequest {
  keyIds: string[];
  algorithm: AssertionAlgorithm | undefined;
  region?: string;
  endpoint?: string;
}

const parseJwksArgs = async (argv: string[]): Promise<JwksRequest | 'help'> => {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        key: { type: 'string', multiple: true },
        alg: { type: 'string' },
        region: { type: 'string' },
        local: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) return 'help';
  const algorithm = values.alg as AssertionAlgorithm | undefined;
  if (algorithm !== undefined && !ASSERTION_ALGORITHMS.includes(algorithm))
    throw new UsageError(`--alg must be one of ${ASSERTION_ALGORITHMS.join(', ')}`);
  const keyIds = values.key ?? [];
  if (!values.local) {
    if (keyIds.length === 0) throw new UsageError('name at least one key with --key (or use --local)');
    return { keyIds, algorithm, region: values.region };
  }
  let stack: LocalStack;
  try {
    stack = JSON.parse(await readFile(STACK_FILE, 'utf8')) as LocalStack;
  } catch {
    throw new UsageError('--local: the local stack is not running (start it with `npm start`)');
  }
  const localKeys = stack.signingKeyIds ?? [];
  if (keyIds.length === 0 && localKeys.length === 0)
    throw new UsageError('--local: the local stack has no signing key');
  return {
    keyIds: keyIds.length > 0 ? keyIds : localKeys,
    algorithm,
    region: values.region ?? stack.region,
    endpoint: stack.motoEndpoint,
  };
};

/** The JWK Set of these keys, as the broker would sign with them. */
const readJwks = async (kms: KMSClient, keyIds: readonly string[], algorithm?: AssertionAlgorithm) => {
  const signer = new KmsAssertionSigner(kms, systemClock);
  return jwkSet(await Promise.all(keyIds.map((id) => signer.signingKey(id, algorithm))));
};

const main = async (): Promise<number> => {
  let request: JwksRequest | 'help';
  try {
    request = await parseJwksArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`${err.message}\n${USAGE}`);
    return 2;
  }
  if (request === 'help') {
    console.log(USAGE);
    return 0;
  }
  const kms = new KMSClient({
    maxAttempts: 3,
    ...(request.region ? { region: request.region } : {}),
    ...(request.endpoint
      ? { endpoint: request.endpoint, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } }
      : {}),
  });
  try {
    console.log(JSON.stringify(await readJwks(kms, request.keyIds, request.algorithm), null, 2));
    return 0;
  } catch (err) {
    // A broker error's message names the key and KMS's error (no secret here); anything else (no credentials, no
    // region) by its own message.
    console.error(`jwks: ${err instanceof BrokerError ? err.message : String((err as Error).message ?? err)}`);
    return 1;
  } finally {
    kms.destroy();
  }
};

process.exitCode = await main();
