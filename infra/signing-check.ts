/**
 * The package-time checks of private_key_jwt clients against the stage's signing key (infra/config-check.ts runs
 * them): the key the function signs with is one the stage lets its roles sign with (upstreamSigningKey,
 * infra/upstream-signing.cjs), with the one algorithm it pins (upstreamSigningAlgorithm). A mismatch deploys a broker
 * whose every token request for that client is refused by KMS (signing_key_unusable).
 */
import { createRequire } from 'node:module';
import type { BrokerConfig, PrivateKeyJwtAuth } from '../functions/lib/domain/settings';
import { defaultAlgorithmFor } from '../functions/lib/upstream/jwk';
import type { Findings, StageSettings } from './config-check';

type StageKeys = { create: string; existing?: undefined } | { existing: string[]; create?: undefined } | undefined;
const { parseSigningKey } = createRequire(import.meta.url)('./upstream-signing.cjs') as {
  parseSigningKey: (value: unknown) => StageKeys;
};

const text = (value: unknown): string => (value === undefined || value === null ? '' : String(value).trim());

export const checkSigningKeys = (settings: StageSettings, config: BrokerConfig, findings: Findings): void => {
  const clients = [...config.clients.values()].filter((c) => c.auth.method === 'private_key_jwt');
  if (clients.length === 0) return;
  const param = settings.sources.env.BROKER_CLIENTS ?? 'brokerClients';
  let keys: StageKeys;
  try {
    keys = parseSigningKey(settings.params.upstreamSigningKey);
  } catch (err) {
    findings.errors.push(`stage parameter upstreamSigningKey: ${(err as Error).message}`);
    return;
  }
  if (!keys) {
    findings.errors.push(
      `stage parameter upstreamSigningKey is not set, but client ${JSON.stringify(clients[0]!.name)} uses ` +
        'private_key_jwt: the function roles may sign with no key, so every token request of it would fail ' +
        '(signing_key_unusable); set it to RSA_2048 or ECC_NIST_P256 (the stack creates the key) or to the key ARNs ' +
        'of its signingKeyId',
    );
    return;
  }
  const stageAlgorithm = text(settings.params.upstreamSigningAlgorithm) || defaultAlgorithmFor(keys.create);
  const stageAlias = `:alias/${settings.functionName.replace(/-token$/, '')}-upstream-signing`;
  for (const client of clients) {
    const auth = client.auth as PrivateKeyJwtAuth;
    const where = `stage parameter ${param}: BROKER_CLIENTS.${client.name}`;
    const algorithm = auth.signingAlgorithm ?? defaultAlgorithmFor(keys.create);
    if (algorithm && stageAlgorithm && algorithm !== stageAlgorithm) {
      findings.errors.push(
        `${where} signs ${algorithm}, but upstreamSigningAlgorithm lets the function roles sign ${stageAlgorithm} only`,
      );
    }
    // Only the first key signs; the others are published (a rotation) and need no permission.
    const signing = auth.signingKeyIds[0]!;
    const isAlias = signing.includes(':alias/');
    if (keys.create) {
      if (isAlias && !(signing.endsWith(stageAlias) && signing.split(':')[3] === settings.region)) {
        findings.errors.push(
          `${where}.signingKeyId signs with ${JSON.stringify(signing)}, not the stage's key (alias ` +
            `arn:aws:kms:${settings.region}:<account>${stageAlias}): the function roles may sign with that key only`,
        );
      } else if (!isAlias) {
        findings.warnings.push(
          `${where}.signingKeyId names a key ARN: packaging cannot check it is the key the stack creates; name the ` +
            `alias (arn:aws:kms:${settings.region}:<account>${stageAlias}) instead`,
        );
      }
    } else if (isAlias) {
      findings.warnings.push(
        `${where}.signingKeyId names an alias: packaging cannot check it points at one of the keys of ` +
          'upstreamSigningKey (the only keys the function roles may sign with)',
      );
    } else if (!(keys.existing ?? []).includes(signing)) {
      findings.errors.push(
        `${where}.signingKeyId signs with ${JSON.stringify(signing)}, which is not one of the keys of ` +
          'upstreamSigningKey: the function roles may sign with those only',
      );
    }
  }
};
