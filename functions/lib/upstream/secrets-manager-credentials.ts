/**
 * The upstream client's credentials from Secrets Manager (the way out): parsing the secret value as untrusted,
 * caching it per container, following a rotation (AWSPREVIOUS), and falling back to the last value read while
 * Secrets Manager is down.
 */
import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { ClientCredentials } from '../domain/client-credentials';
import type { CredentialSource, SecretReadOptions } from '../ports';
import { isRecord } from '../shared/assert';
import { describeAwsError, isUnavailable } from '../shared/aws-errors';
import type { Clock } from '../shared/clock';
import { BrokerError, ConfigurationError, quote, UnavailableError } from '../shared/errors';
import { SingleFlight } from '../shared/single-flight';

/** Parses a secret value `{ "client_id": "...", "client_secret": "..." }`. Errors name the secret id, never the value. */
export const parseClientSecret = (
  secretId: string,
  value: string | undefined,
  versionId?: string,
): ClientCredentials => {
  const bad = (what: string) => new ConfigurationError(`secret ${quote(secretId, 256)} ${what}`, 'secret_malformed');
  if (value === undefined) throw bad('has no SecretString (binary secrets are not supported)');
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw bad('is not valid JSON'); // the parser's message quotes the value: not passed on
  }
  if (!isRecord(parsed)) throw bad('is not a JSON object');
  const { client_id: clientId, client_secret: clientSecret } = parsed;
  if (typeof clientId !== 'string' || clientId === '') throw bad('has no non-empty string "client_id"');
  if (typeof clientSecret !== 'string' || clientSecret === '') throw bad('has no non-empty string "client_secret"');
  return new ClientCredentials(secretId, clientId, clientSecret, versionId);
};

/**
 * Client credentials from Secrets Manager, cached in memory per container for at most `maxAgeSec`. Concurrent
 * reads of one secret share one request; a failed read is not cached. If Secrets Manager is unavailable, the last
 * credentials read are used, whatever their age.
 */
export class SecretsManagerCredentials implements CredentialSource {
  readonly #cache = new Map<string, { credentials: ClientCredentials; fetchedAtMs: number }>();
  readonly #inFlight = new SingleFlight<string, ClientCredentials>();

  constructor(
    private readonly client: SecretsManagerClient,
    private readonly clock: Clock,
    private readonly maxAgeSec: number,
  ) {}

  async get(secretId: string, options: SecretReadOptions = {}): Promise<ClientCredentials> {
    const cached = this.#cache.get(secretId);
    if (cached && !options.fresh && this.clock.nowMs() - cached.fetchedAtMs < this.maxAgeSec * 1000) {
      return cached.credentials;
    }
    try {
      const credentials = await this.#inFlight.run(secretId, () => this.#read(secretId, 'AWSCURRENT'));
      this.#cache.set(secretId, { credentials, fetchedAtMs: this.clock.nowMs() });
      return credentials;
    } catch (err) {
      if (!(err instanceof UnavailableError) || !cached) throw err;
      options.onFallback?.(err);
      return cached.credentials;
    }
  }

  /** The AWSPREVIOUS version, if the secret has one (it has after a rotation). Not cached. */
  async previous(secretId: string): Promise<ClientCredentials | undefined> {
    try {
      return await this.#read(secretId, 'AWSPREVIOUS');
    } catch (err) {
      if (err instanceof BrokerError && err.reason === 'secret_not_found') return undefined;
      throw err;
    }
  }

  /** Keeps `credentials` (for example the AWSPREVIOUS version, still the one the endpoint accepts) as the secret's. */
  remember(credentials: ClientCredentials): void {
    this.#cache.set(credentials.secretId, { credentials, fetchedAtMs: this.clock.nowMs() });
  }

  async #read(secretId: string, versionStage: 'AWSCURRENT' | 'AWSPREVIOUS'): Promise<ClientCredentials> {
    let output;
    try {
      output = await this.client.send(new GetSecretValueCommand({ SecretId: secretId, VersionStage: versionStage }));
    } catch (err) {
      throw translateSecretsError(secretId, err);
    }
    return parseClientSecret(secretId, output.SecretString, output.VersionId);
  }
}

const translateSecretsError = (secretId: string, err: unknown) => {
  const id = quote(secretId, 256);
  const what = describeAwsError(err);
  if (isUnavailable(err)) {
    return new UnavailableError(`Secrets Manager is unavailable reading secret ${id}: ${what}`, 'secrets_unavailable', {
      cause: err,
    });
  }
  const { name } = err as { name?: string };
  const reason = name === 'ResourceNotFoundException' ? 'secret_not_found' : 'secret_unreadable';
  const detail = name === 'ResourceNotFoundException' ? 'was not found' : `could not be read: ${what}`;
  return new ConfigurationError(`secret ${id} ${detail}`, reason, { cause: err });
};
