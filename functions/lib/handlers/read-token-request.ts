/**
 * The caller's token request (the way in): checked for shape first (readTokenRequest, nothing about the
 * configuration, so it can run before authorization), then against the configuration (resolveTokenRequest).
 */

import type { BrokerConfig } from '../domain/settings';
import { DEFAULT_MIN_TTL_SEC, MAX_MIN_TTL_SEC, type TokenRequest } from '../domain/token-request';
import {
  assertArray,
  assertBoolean,
  assertInteger,
  assertRecord,
  assertScopeTokens,
  assertString,
  type Fail,
} from '../shared/assert';
import { InvalidRequestError, InvalidScopeError, quote } from '../shared/errors';
import { normalizeScopes } from '../shared/scopes';

/** A token request as the caller wrote it, checked for shape only: nothing here depends on the configuration. */
export interface TokenRequestInput {
  /** As given; undefined when the caller named no client. */
  readonly clientName: string | undefined;
  /** Deduplicated and sorted. */
  readonly scopes: readonly string[];
  readonly minTtlSec: number;
  readonly forceRefresh: boolean;
  readonly rejectedTokenSha256: string | undefined;
  /** The caller's identity proof, unchecked (identity-proof.ts checks it); undefined when absent. */
  readonly identityProof: unknown;
}

export const MAX_SCOPES_PER_REQUEST = 32;
const FIELDS = new Set(['client', 'scopes', 'minTtlSeconds', 'forceRefresh', 'rejectedTokenSha256', 'identityProof']);
const CLIENT_NAME = /^[A-Za-z0-9._-]{1,64}$/;

const badRequest: Fail = (message) => {
  throw new InvalidRequestError(message);
};

const readScopes = (raw: unknown): string[] => {
  assertArray(raw, '"scopes"', badRequest, 'an array of scope strings', 0);
  if (raw.length === 0) badRequest('"scopes" must not be empty');
  if (raw.length > MAX_SCOPES_PER_REQUEST)
    badRequest(`"scopes" has ${raw.length} entries; at most ${MAX_SCOPES_PER_REQUEST} are allowed`);
  assertScopeTokens(raw, (i) => `"scopes[${i}]"`, badRequest, 'an RFC 6749 scope token');
  return normalizeScopes(raw);
};

const parseMinTtl = (raw: unknown): number => {
  if (raw === undefined) return DEFAULT_MIN_TTL_SEC;
  assertInteger(raw, '"minTtlSeconds"', badRequest, 0, MAX_MIN_TTL_SEC);
  return raw;
};

/** Reads an untrusted invoke event or URL body. Throws InvalidRequestError; knows nothing of the configuration. */
export const readTokenRequest = (event: unknown): TokenRequestInput => {
  assertRecord(event, 'the event', badRequest, 'a JSON object');
  for (const field of Object.keys(event)) {
    if (!FIELDS.has(field)) {
      throw new InvalidRequestError(`unknown field ${quote(field)}; expected ${[...FIELDS].join(', ')}`);
    }
  }
  const name = event.client;
  if (name !== undefined)
    assertString(name, '"client"', badRequest, 'a client name (letters, digits, ".", "_", "-")', (s) =>
      CLIENT_NAME.test(s),
    );
  const scopes = readScopes(event.scopes);
  const minTtlSec = parseMinTtl(event.minTtlSeconds);
  const { forceRefresh, rejectedTokenSha256 } = parseForceRefresh(event.forceRefresh, event.rejectedTokenSha256);
  return { clientName: name, scopes, minTtlSec, forceRefresh, rejectedTokenSha256, identityProof: event.identityProof };
};

/**
 * The client a request is for. Without a name: for a caller held to grants, the one client its grants name (`granted`,
 * so a caller without a grant learns no client's name); otherwise the only configured client. Where that is not one
 * client, the caller must name it (names are never listed: a caller learns them from its grant, not from the broker).
 */
export const clientNameFor = (
  input: TokenRequestInput,
  config: BrokerConfig,
  granted?: ReadonlySet<string>,
): string => {
  if (input.clientName !== undefined) return input.clientName;
  const candidates = granted ?? new Set(config.clients.keys());
  if (candidates.size === 1) return [...candidates][0]!;
  throw new InvalidRequestError(
    `"client" is required: ${granted ? 'your grants name' : 'the broker has'} several clients`,
  );
};

/** The request against the configuration: a known client and scopes it allows. Throws InvalidRequestError / InvalidScopeError. */
export const resolveTokenRequest = (
  input: TokenRequestInput,
  config: BrokerConfig,
  name = clientNameFor(input, config),
): TokenRequest => {
  const client = config.clients.get(name);
  if (!client) throw new InvalidRequestError(`unknown client ${quote(name)}`, 'unknown_client');
  const refused = input.scopes.filter((s) => !client.scopes.has(s));
  if (refused.length > 0) {
    const names = refused.map((s) => quote(s)).join(', ');
    throw new InvalidScopeError(`scope ${names} is not allowed for client ${quote(client.name)}`);
  }
  const { scopes, minTtlSec, forceRefresh, rejectedTokenSha256 } = input;
  return { client, scopes, minTtlSec, forceRefresh, rejectedTokenSha256 };
};

/** Validates an untrusted invoke event against the configuration (both steps above); does no I/O. */
export const parseTokenRequest = (event: unknown, config: BrokerConfig): TokenRequest =>
  resolveTokenRequest(readTokenRequest(event), config);

const parseForceRefresh = (force: unknown, sha: unknown) => {
  if (force !== undefined) assertBoolean(force, '"forceRefresh"', badRequest);
  if (sha === undefined) return { forceRefresh: force === true, rejectedTokenSha256: undefined };
  if (force !== true) badRequest('"rejectedTokenSha256" goes with "forceRefresh": true');
  assertString(sha, '"rejectedTokenSha256"', badRequest, 'the hex SHA-256 of the rejected token (64 hex digits)', (s) =>
    /^[0-9a-fA-F]{64}$/.test(s),
  );
  return { forceRefresh: true, rejectedTokenSha256: sha.toLowerCase() };
};
