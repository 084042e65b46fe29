/**
 * A private_key_jwt client of the LimitRail sandbox, set up the way an operator does it: a signing key in (moto's) KMS,
 * its JWK Set as `npm run jwks` prints it (the broker's own code) registered with the sandbox, and the BROKER_CLIENTS
 * entry that signs with it. For `npm start` (the demo client `limitrail-jwt`) and the tests. Set-up code for local
 * runs, never part of the broker.
 */
import { KMSClient } from '@aws-sdk/client-kms';
import { systemClock } from '../../../functions/lib/shared/clock';
import { jwkSet } from '../../../functions/lib/upstream/jwk';
import { KmsAssertionSigner } from '../../../functions/lib/upstream/kms-assertion-signer';
import { ensureSigningKey } from './aws-setup';
import type { Sandbox } from './sandbox';

/** `npm start`'s private_key_jwt client: its name in BROKER_CLIENTS, its id at the sandbox, its key's alias. */
export const DEMO_KEY_CLIENT = {
  name: 'limitrail-jwt',
  clientId: 'lr_jwt_5f0c7a1e9b3d4c2a8e6f1b0d7c9a3e5f',
  alias: 'alias/limitrail-token-broker-local-upstream-signing',
} as const;

export interface KeyClient {
  /** The signing key's ARN (its `signingKeyId`). */
  keyArn: string;
  /** The BROKER_CLIENTS entry of the client. */
  config: Record<string, unknown>;
}

export const ensureKeyClient = async (options: {
  endpoint: string;
  region: string;
  sandbox: Sandbox;
  clientId: string;
  alias: string;
  keySpec?: 'RSA_2048' | 'ECC_NIST_P256';
}): Promise<KeyClient> => {
  const { endpoint, region, sandbox, clientId } = options;
  const keyArn = await ensureSigningKey({
    endpoint,
    region,
    alias: options.alias,
    keySpec: options.keySpec ?? 'ECC_NIST_P256',
  });
  const kms = new KMSClient({ endpoint, region, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  const scopes = sandbox.clients[0]!.scopes;
  try {
    const key = await new KmsAssertionSigner(kms, systemClock).signingKey(keyArn, undefined);
    sandbox.registerAssertionClient({ clientId, jwks: jwkSet([key]), scopes });
  } finally {
    kms.destroy();
  }
  return {
    keyArn,
    config: { authMethod: 'private_key_jwt', clientId, signingKeyId: keyArn, tokenUrl: sandbox.tokenUrl, scopes },
  };
};
