/**
 * BROKER_CLIENTS, parsed: the upstream OAuth clients, each with its token URL (https, or loopback http where allowed),
 * how it authenticates (a secret, or a KMS signing key), its token parameters, scopes and prewarm sets. Errors name
 * the client and the field (`BROKER_CLIENTS.partner.signingKeyId must be ...`), never the value.
 */
import {
  ASSERTION_ALGORITHMS,
  type AssertionAlgorithm,
  CLIENT_AUTH_METHODS,
  type ClientAuth,
  type ClientAuthMethod,
  type ClientConfig,
  type TokenParams,
} from '../domain/settings';
import { assertArray, assertKnownKeys, assertRecord, assertScopeTokens, assertString } from '../shared/assert';
import { invalidConfiguration as fail } from '../shared/errors';
import { normalizeScopes } from '../shared/scopes';
import { ENV } from './env-names';

const CLIENT_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const SECRET_FIELDS = ['secretId'] as const;
const KEY_FIELDS = ['signingKeyId', 'signingAlgorithm', 'assertionAudience'] as const;
const CLIENT_FIELDS = new Set<string>([
  'tokenUrl',
  'clientId',
  'scopes',
  'prewarm',
  'authMethod',
  'tokenParams',
  ...SECRET_FIELDS,
  ...KEY_FIELDS,
]);
/** A KMS key ARN (`...:key/<id>`, multi-Region `mrk-` ids too) or alias ARN (`...:alias/<name>`). */
const KMS_KEY_ARN =
  /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key\/(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})|alias\/[A-Za-z0-9/_-]{1,250})$/;
/** Keys published at once: the signing key and the ones being rotated in or out. */
const MAX_SIGNING_KEYS = 5;
const VISIBLE = /^[\x21-\x7E]{1,2048}$/;
const TOKEN_PARAM_FIELDS = new Set(['audience', 'resource']);
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
  const { clientId, scopes } = raw;
  if (clientId !== undefined) {
    assertString(clientId, `${where}.clientId`, fail, 'a non-empty string without spaces', (s) =>
      /^[\x21-\x7E]{1,256}$/.test(s),
    );
  }
  assertArray(scopes, `${where}.scopes`, fail);
  assertScopeTokens(scopes, (i) => `${where}.scopes[${i}]`, fail, 'an RFC 6749 scope token');
  const allowed = new Set(normalizeScopes(scopes));
  const tokenUrl = checkTokenUrl(`${where}.tokenUrl`, raw.tokenUrl, allowLoopback);
  return {
    name,
    tokenUrl,
    clientId,
    auth: parseAuth(where, raw, tokenUrl),
    tokenParams: parseTokenParams(`${where}.tokenParams`, raw.tokenParams),
    scopes: allowed,
    prewarm: parsePrewarm(`${where}.prewarm`, raw.prewarm, allowed),
  };
};

/**
 * `authMethod` (default client_secret_post) and the fields of that method: `secretId` for the secret methods;
 * `clientId`, `signingKeyId`, optional `signingAlgorithm` and `assertionAudience` for private_key_jwt. A field of the
 * other kind is refused, so a client never looks configured for a method it does not use.
 */
const parseAuth = (where: string, raw: Record<string, unknown>, tokenUrl: string): ClientAuth => {
  const method = raw.authMethod ?? 'client_secret_post';
  assertString(method, `${where}.authMethod`, fail, `one of ${CLIENT_AUTH_METHODS.join(', ')}`, (s) =>
    (CLIENT_AUTH_METHODS as readonly string[]).includes(s),
  );
  const misplaced = (fields: readonly string[]) => fields.find((field) => raw[field] !== undefined);
  if ((method as ClientAuthMethod) !== 'private_key_jwt') {
    const field = misplaced(KEY_FIELDS);
    if (field) fail(`${where}.${field} is only for authMethod "private_key_jwt" (this client uses "${method}")`);
    assertString(
      raw.secretId,
      `${where}.secretId`,
      fail,
      'a non-empty secret name or ARN',
      (s) => s.trim() !== '' && s.length <= 2048,
    );
    return { method: method as 'client_secret_post' | 'client_secret_basic', secretId: raw.secretId };
  }
  if (misplaced(SECRET_FIELDS))
    fail(`${where}.secretId must not be set for authMethod "private_key_jwt": no secret is read for it`);
  if (raw.clientId === undefined)
    fail(`${where}.clientId is required for authMethod "private_key_jwt" (the assertion's iss and sub)`);
  const { signingAlgorithm, assertionAudience } = raw;
  if (signingAlgorithm !== undefined) {
    assertString(
      signingAlgorithm,
      `${where}.signingAlgorithm`,
      fail,
      `one of ${ASSERTION_ALGORITHMS.join(', ')}`,
      (s) => (ASSERTION_ALGORITHMS as readonly string[]).includes(s),
    );
  }
  if (assertionAudience !== undefined) {
    assertString(assertionAudience, `${where}.assertionAudience`, fail, 'a non-empty string without spaces', (s) =>
      VISIBLE.test(s),
    );
  }
  return {
    method: 'private_key_jwt',
    signingKeyIds: parseSigningKeyIds(`${where}.signingKeyId`, raw.signingKeyId),
    signingAlgorithm: signingAlgorithm as AssertionAlgorithm | undefined,
    assertionAudience: assertionAudience ?? tokenUrl,
  };
};

/** `"signingKeyId": "arn:..."` or `["arn:new", "arn:old"]`: one to five distinct KMS key or alias ARNs. */
const parseSigningKeyIds = (where: string, raw: unknown): string[] => {
  const what = 'a KMS key ARN or alias ARN (arn:aws:kms:<region>:<account>:key/<id> or ...:alias/<name>)';
  if (raw === undefined) return fail(`${where} is required for authMethod "private_key_jwt": ${what}`);
  const ids = typeof raw === 'string' ? [raw] : raw;
  assertArray(ids, where, fail, `${what}, or a non-empty array of them`);
  if (ids.length > MAX_SIGNING_KEYS) fail(`${where} lists more than ${MAX_SIGNING_KEYS} keys`);
  ids.forEach((id, i) => {
    assertString(id, typeof raw === 'string' ? where : `${where}[${i}]`, fail, what, (s) => KMS_KEY_ARN.test(s));
  });
  if (new Set(ids).size !== ids.length) fail(`${where} lists a key twice`);
  return ids as string[];
};

/** `"tokenParams": { "audience": "https://api...", "resource": ["https://a.example/"] }`, both optional. */
const parseTokenParams = (where: string, raw: unknown): TokenParams => {
  if (raw === undefined) return {};
  assertRecord(raw, where, fail, 'an object with "audience" and/or "resource"');
  assertKnownKeys(raw, TOKEN_PARAM_FIELDS, where, fail);
  const { audience, resource } = raw;
  if (audience !== undefined) {
    assertString(audience, `${where}.audience`, fail, 'a non-empty string without spaces', (s) => VISIBLE.test(s));
  }
  if (resource === undefined) return audience === undefined ? {} : { audience };
  assertArray(resource, `${where}.resource`, fail, 'a non-empty array of absolute URIs');
  resource.forEach((uri, i) => {
    // RFC 8707 section 2: an absolute URI without a fragment.
    assertString(uri, `${where}.resource[${i}]`, fail, 'an absolute URI without a fragment', isResourceUri);
  });
  const canonical = [...new Set(resource as string[])].sort();
  return audience === undefined ? { resource: canonical } : { audience, resource: canonical };
};

const isResourceUri = (s: string): boolean => {
  if (!VISIBLE.test(s)) return false;
  try {
    return new URL(s).hash === '' && !s.includes('#');
  } catch {
    return false;
  }
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
