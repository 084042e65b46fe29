import type { BrokerConfig, ClientConfig } from './config';
import { DEFAULT_MIN_TTL_SEC, MAX_MIN_TTL_SEC } from './config';
import { InvalidRequestError, InvalidScopeError, quote } from './errors';
import { isScopeToken, normalizeScopes } from './scopes';
import { isRecord } from './json';

/** A validated token request: the client, its canonical scope set and the least lifetime the caller accepts. */
export interface TokenRequest {
  readonly client: ClientConfig;
  /** Deduplicated and sorted. */
  readonly scopes: readonly string[];
  readonly minTtlSec: number;
  /** The caller's LimitRail call was rejected with 401: do not answer with the token it used. */
  readonly forceRefresh: boolean;
  /** Hex SHA-256 of the rejected token (lowercase), when the caller gave it. */
  readonly rejectedTokenSha256: string | undefined;
}

export const MAX_SCOPES_PER_REQUEST = 32;
const FIELDS = new Set(['client', 'scopes', 'minTtlSeconds', 'forceRefresh', 'rejectedTokenSha256']);

const resolveClient = (config: BrokerConfig, name: unknown): ClientConfig => {
  if (name === undefined) {
    if (config.clients.size === 1) return [...config.clients.values()][0]!;
    throw new InvalidRequestError(
      `"client" is required: several clients are configured (${[...config.clients.keys()].join(', ')})`,
    );
  }
  if (typeof name !== 'string') throw new InvalidRequestError('"client" must be a string');
  const client = config.clients.get(name);
  if (!client) throw new InvalidRequestError(`unknown client ${quote(name)}`, 'unknown_client');
  return client;
};

const parseScopes = (client: ClientConfig, raw: unknown): string[] => {
  if (!Array.isArray(raw)) throw new InvalidRequestError('"scopes" must be an array of scope strings');
  if (raw.length === 0) throw new InvalidRequestError('"scopes" must not be empty');
  if (raw.length > MAX_SCOPES_PER_REQUEST) {
    throw new InvalidRequestError(`"scopes" has ${raw.length} entries; at most ${MAX_SCOPES_PER_REQUEST} are allowed`);
  }
  raw.forEach((s, i) => {
    if (!isScopeToken(s)) throw new InvalidRequestError(`"scopes[${i}]" must be an RFC 6749 scope token`);
  });
  const scopes = normalizeScopes(raw as string[]);
  const refused = scopes.filter((s) => !client.scopes.has(s));
  if (refused.length > 0) {
    const names = refused.map((s) => quote(s)).join(', ');
    throw new InvalidScopeError(`scope ${names} is not allowed for client ${quote(client.name)}`);
  }
  return scopes;
};

const parseMinTtl = (raw: unknown): number => {
  if (raw === undefined) return DEFAULT_MIN_TTL_SEC;
  if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < 0 || raw > MAX_MIN_TTL_SEC) {
    throw new InvalidRequestError(`"minTtlSeconds" must be an integer from 0 to ${MAX_MIN_TTL_SEC}`);
  }
  return raw;
};

/** Validates an untrusted invoke event. Throws InvalidRequestError / InvalidScopeError; does no I/O. */
export const parseTokenRequest = (event: unknown, config: BrokerConfig): TokenRequest => {
  if (!isRecord(event)) throw new InvalidRequestError('the event must be a JSON object');
  for (const field of Object.keys(event)) {
    if (!FIELDS.has(field)) {
      throw new InvalidRequestError(`unknown field ${quote(field)}; expected ${[...FIELDS].join(', ')}`);
    }
  }
  const client = resolveClient(config, event.client);
  const scopes = parseScopes(client, event.scopes);
  const minTtlSec = parseMinTtl(event.minTtlSeconds);
  const { forceRefresh, rejectedTokenSha256 } = parseForceRefresh(event.forceRefresh, event.rejectedTokenSha256);
  return { client, scopes, minTtlSec, forceRefresh, rejectedTokenSha256 };
};

const parseForceRefresh = (force: unknown, sha: unknown) => {
  if (force !== undefined && typeof force !== 'boolean') throw new InvalidRequestError('"forceRefresh" must be a boolean');
  if (sha === undefined) return { forceRefresh: force === true, rejectedTokenSha256: undefined };
  if (force !== true) throw new InvalidRequestError('"rejectedTokenSha256" goes with "forceRefresh": true');
  if (typeof sha !== 'string' || !/^[0-9a-fA-F]{64}$/.test(sha)) {
    throw new InvalidRequestError('"rejectedTokenSha256" must be the hex SHA-256 of the rejected token (64 hex digits)');
  }
  return { forceRefresh: true, rejectedTokenSha256: sha.toLowerCase() };
};
