/**
 * BROKER_CLIENTS, parsed: the upstream OAuth clients, each with its token URL (https, or loopback http where allowed),
 * secret, scopes and prewarm sets. Errors name the client and the field.
 */
import type { ClientConfig } from '../domain/settings';
import { assertArray, assertKnownKeys, assertRecord, assertScopeTokens, assertString } from '../shared/assert';
import { invalidConfiguration as fail } from '../shared/errors';
import { normalizeScopes } from '../shared/scopes';
import { ENV } from './env-names';

const CLIENT_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const CLIENT_FIELDS = new Set(['secretId', 'tokenUrl', 'clientId', 'scopes', 'prewarm']);
const LOOPBACK_HOSTS = new Set(['localhost', '[::1]']);

const isLoopback = (hostname: string): boolean => LOOPBACK_HOSTS.has(hostname) || /^127(\.\d{1,3}){3}$/.test(hostname);

/**
 * https; plain http only to a loopback host and only where ALLOW_LOOPBACK_TOKEN_URL=true (the local stage, tests).
 * Inside Lambda, 127.0.0.1:9001 is the Runtime API: a loopback token URL there would hand the client secret, in
 * clear, to whatever listens locally. No credentials or fragment in the URL.
 */
const checkTokenUrl = (where: string, value: unknown, allowLoopback: boolean): string => {
  assertString(value, where, fail, 'a string', () => true);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return fail(`${where} is not an absolute URL`);
  }
  if (url.username || url.password) return fail(`${where} must not contain credentials`);
  if (url.hash) return fail(`${where} must not have a fragment`);
  if (url.protocol === 'https:') return url.toString();
  if (url.protocol !== 'http:' || !isLoopback(url.hostname)) return fail(`${where} must be https`);
  return allowLoopback
    ? url.toString()
    : fail(
        `${where} is plain http to a loopback host, allowed only with ${ENV.allowLoopbackTokenUrl}=true (local runs and tests)`,
      );
};

const parseClient = (name: string, raw: unknown, allowLoopback: boolean): ClientConfig => {
  const where = `${ENV.clients}.${name}`;
  if (!CLIENT_NAME.test(name)) fail(`client name ${JSON.stringify(name.slice(0, 64))} must match ${CLIENT_NAME}`);
  assertRecord(raw, where, fail);
  assertKnownKeys(raw, CLIENT_FIELDS, where, fail);
  const { secretId, clientId, scopes } = raw;
  assertString(
    secretId,
    `${where}.secretId`,
    fail,
    'a non-empty secret name or ARN',
    (s) => s.trim() !== '' && s.length <= 2048,
  );
  if (clientId !== undefined) {
    assertString(clientId, `${where}.clientId`, fail, 'a non-empty string without spaces', (s) =>
      /^[\x21-\x7E]{1,256}$/.test(s),
    );
  }
  assertArray(scopes, `${where}.scopes`, fail);
  assertScopeTokens(scopes, (i) => `${where}.scopes[${i}]`, fail, 'an RFC 6749 scope token');
  const allowed = new Set(normalizeScopes(scopes));
  return {
    name,
    secretId,
    tokenUrl: checkTokenUrl(`${where}.tokenUrl`, raw.tokenUrl, allowLoopback),
    clientId,
    scopes: allowed,
    prewarm: parsePrewarm(`${where}.prewarm`, raw.prewarm, allowed),
  };
};

/** `"prewarm": [["a"], ["a", "b"]]`: scope sets, each non-empty and allowed for the client. */
const parsePrewarm = (where: string, raw: unknown, allowed: ReadonlySet<string>): string[][] => {
  if (raw === undefined) return [];
  assertArray(raw, where, fail, 'an array of scope arrays', 0);
  const sets = raw.map((set, i) => {
    assertArray(set, `${where}[${i}]`, fail, 'a non-empty array of scopes');
    assertScopeTokens(set, (j) => `${where}[${i}][${j}]`, fail, "one of the client's scopes", allowed);
    return normalizeScopes(set);
  });
  return [...new Map(sets.map((set) => [set.join(' '), set])).values()];
};

export const parseClients = (text: string, allowLoopback: boolean): Map<string, ClientConfig> => {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    // The parser's message quotes the input: never pass it on.
    return fail(`${ENV.clients} is not valid JSON`);
  }
  assertRecord(raw, ENV.clients, fail, 'a JSON object of client name -> client settings');
  const names = Object.keys(raw);
  if (names.length === 0) fail(`${ENV.clients} configures no client`);
  return new Map(names.map((name) => [name, parseClient(name, raw[name], allowLoopback)]));
};
