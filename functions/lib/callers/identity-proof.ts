/**
 * The caller's identity proof, checked before anything is sent anywhere (pure; the STS call is in
 * sts-identity-verifier.ts, reading its answer in sts-answer.ts). A proof is an STS GetCallerIdentity request the caller SigV4-signed with its own
 * credentials: `{ url, headers, body }`. Replayed to STS, it tells the broker who signed it; it cannot be made
 * without the caller's credentials (HashiCorp Vault's AWS IAM auth and aws-iam-authenticator work this way).
 *
 * What is checked here, so that the broker never sends a request to a host the caller chose and never replays a
 * proof meant for someone else:
 *   - the URL is an STS endpoint of the broker's own AWS partition (https, path `/`, no query), or exactly the origin of
 *     AWS_ENDPOINT_URL_STS when that is set (local runs, tests);
 *   - the body is exactly GetCallerIdentity, version 2011-06-15;
 *   - the signature is SigV4 for service `sts`, and its SignedHeaders include the audience header, whose value
 *     is this broker's audience (CALLER_PROOF_AUDIENCE);
 *   - X-Amz-Date is at most 5 minutes old and at most 1 minute in the future.
 * A proof is a credential for its 5 minutes: no message built here contains any part of it.
 */
import type { CheckedProof, Partition, ProofPolicy } from '../domain/proof';
import { isRecord } from '../shared/assert';
import { AccessDeniedError, InvalidRequestError, quote, type Reason } from '../shared/errors';
import { sha256Hex } from '../shared/hash';

export const PROOF_AUDIENCE_HEADER = 'x-limitrail-broker-audience';
/** How long a proof is accepted after it was signed, and how far ahead of our clock it may be dated. */
export const PROOF_MAX_AGE_MS = 5 * 60_000;
export const PROOF_MAX_FUTURE_MS = 60_000;

const MAX_URL_CHARS = 512;
const MAX_HEADERS = 24;
const MAX_HEADER_BYTES = 16 * 1024;
const BODIES = new Set(['Action=GetCallerIdentity&Version=2011-06-15', 'Version=2011-06-15&Action=GetCallerIdentity']);
const HEADER_NAME = /^[a-z0-9-]{1,64}$/;
const HEADER_VALUE = /^[\x20-\x7E]*$/;
/** Set by the broker itself on the replayed request, or meaningless for one: never taken from the caller. */
const NOT_FROM_CALLER = new Set([
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'expect',
  'proxy-authorization',
  'proxy-connection',
]);
/** The SigV4 Authorization header, read in parts so that a refusal can say which part is wrong. */
const AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=([^,\s]{0,512}), ?SignedHeaders=([^,\s]{0,1024}), ?Signature=(\S{0,128})$/;
const CREDENTIAL_SCOPE = /^([^/]{0,256})\/(\d{8})\/([a-z0-9-]{1,32})\/([a-z0-9-]{1,32})\/aws4_request$/;
/** AWS access key ids (AKIA…, ASIA…) are 16 to 128 letters and digits. */
const ACCESS_KEY_ID = /^[A-Za-z0-9]{16,128}$/;
const SIGNED_HEADERS = /^[a-z0-9-]+(;[a-z0-9-]+)*$/;
const SIGNATURE = /^[0-9a-f]{64}$/;
const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
/** STS endpoints per partition: global, regional and FIPS (aws), GovCloud regional and FIPS, China regional. */
const STS_HOSTS: Record<Partition, RegExp> = {
  aws: /^(?:sts\.amazonaws\.com|sts(?:-fips)?\.(?!cn-|us-gov-)[a-z]{2}(?:-[a-z]+)+-\d{1,2}\.amazonaws\.com)$/,
  'aws-us-gov': /^sts(?:-fips)?\.us-gov-[a-z]+-\d{1,2}\.amazonaws\.com$/,
  'aws-cn': /^sts\.cn-[a-z]+-\d{1,2}\.amazonaws\.com\.cn$/,
};

const refuse = (description: string, reason: Reason): never => {
  throw new AccessDeniedError(`identity proof refused: ${description}`, reason);
};
const malformed = (description: string): never => {
  throw new InvalidRequestError(`"identityProof" ${description}`, 'proof_malformed');
};

const checkUrl = (raw: unknown, policy: ProofPolicy): string => {
  if (typeof raw !== 'string' || raw.length > MAX_URL_CHARS)
    return malformed(`"url" must be a string of at most ${MAX_URL_CHARS} characters`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return malformed('"url" is not an absolute URL');
  }
  const plain =
    url.pathname === '/' && url.search === '' && url.hash === '' && url.username === '' && url.password === '';
  if (policy.stsOrigin !== undefined && url.origin !== policy.stsOrigin) {
    refuse(
      `its URL is not an AWS STS endpoint this broker accepts: only ${policy.stsOrigin}/ (its AWS_ENDPOINT_URL_STS)`,
      'proof_not_sts',
    );
  }
  if (
    policy.stsOrigin === undefined &&
    !(url.protocol === 'https:' && url.port === '' && STS_HOSTS[policy.partition].test(url.hostname))
  ) {
    const example =
      policy.partition === 'aws-cn' ? 'https://sts.<region>.amazonaws.com.cn/' : 'https://sts.<region>.amazonaws.com/';
    refuse(`its URL is not an AWS STS endpoint of this broker's partition (${example})`, 'proof_not_sts');
  }
  if (!plain) {
    refuse(
      "its URL is not an AWS STS endpoint's root: the path must be / with no query, fragment or user",
      'proof_not_sts',
    );
  }
  return url.toString();
};

const checkHeaders = (raw: unknown): Record<string, string> => {
  if (!isRecord(raw)) return malformed('"headers" must be an object of header name -> string');
  const entries = Object.entries(raw);
  if (entries.length > MAX_HEADERS) malformed(`"headers" has more than ${MAX_HEADERS} entries`);
  const headers: Record<string, string> = {};
  let bytes = 0;
  for (const [name, value] of entries) {
    const lower = name.toLowerCase();
    if (!HEADER_NAME.test(lower) || Object.hasOwn(headers, lower))
      malformed('"headers" has an invalid or repeated header name');
    if (typeof value !== 'string' || !HEADER_VALUE.test(value))
      return malformed(`"headers" value of ${JSON.stringify(lower)} must be printable ASCII`);
    bytes += lower.length + value.length;
    if (NOT_FROM_CALLER.has(lower)) continue;
    headers[lower] = value;
  }
  if (bytes > MAX_HEADER_BYTES) malformed(`"headers" are larger than ${MAX_HEADER_BYTES} bytes`);
  return headers;
};

const parseAmzDate = (value: string | undefined): number | undefined => {
  const m = value === undefined ? null : AMZ_DATE.exec(value);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number, number];
  const ms = Date.UTC(y, mo - 1, d, h, mi, s);
  return Number.isNaN(ms) ? undefined : ms;
};

/** The parts of the SigV4 Authorization header the checks need; a refusal naming the part that is wrong. */
const readAuthorization = (
  value: string | undefined,
): {
  accessKeyId: string;
  credentialScope: string;
  credentialDate: string;
  service: string;
  signed: Set<string>;
  signature: string;
} => {
  if (value === undefined) return refuse('it has no Authorization header: sign it with SigV4', 'proof_unsigned');
  if (!value.startsWith('AWS4-HMAC-SHA256 '))
    refuse('its Authorization header is not a SigV4 signature (AWS4-HMAC-SHA256)', 'proof_unsigned');
  const parts = AUTHORIZATION.exec(value);
  if (!parts) {
    return refuse(
      'its Authorization header is not "AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…"',
      'proof_unsigned',
    );
  }
  const [, credential, signedHeaderList, signature] = parts as unknown as [string, string, string, string];
  const scope = CREDENTIAL_SCOPE.exec(credential);
  if (!scope) {
    return refuse(
      'its Authorization Credential is not <access key id>/<yyyymmdd>/<region>/<service>/aws4_request',
      'proof_unsigned',
    );
  }
  const [, accessKeyId, credentialDate, , service] = scope as unknown as [string, string, string, string, string];
  if (!ACCESS_KEY_ID.test(accessKeyId)) {
    refuse(
      `its access key id has an unsupported format (${accessKeyId.length} characters): AWS access key ids are 16 to ` +
        '128 letters and digits (AKIA…, ASIA…), which a placeholder such as "test" is not; sign it with the ' +
        'credentials of an AWS (or, locally, moto) session',
      'proof_unsigned',
    );
  }
  if (!SIGNED_HEADERS.test(signedHeaderList))
    refuse('its Authorization SignedHeaders is not a list of lowercase header names separated by ;', 'proof_unsigned');
  if (!SIGNATURE.test(signature)) refuse('its Authorization Signature is not 64 hexadecimal digits', 'proof_unsigned');
  const credentialScope = credential.slice(accessKeyId.length + 1);
  return {
    accessKeyId,
    credentialScope,
    credentialDate,
    service,
    signed: new Set(signedHeaderList.split(';')),
    signature,
  };
};

/**
 * What goes to STS, and what the verified-identity cache keys on: the headers the signature covers (`host` is the
 * URL's and `content-length` the body's, both set by the broker; any other signed header the proof does not carry is
 * refused), the Authorization header, and `x-amz-security-token` (STS needs it with session credentials, signed or
 * not). No other header the caller sent goes anywhere: padding a proof with unsigned headers changes neither what STS
 * sees nor the key, so it cannot cost a second STS call or a second cache entry. The broker sets `content-type` and
 * `accept` itself unless they are signed (sts-identity-verifier.ts).
 */
const signedParts = (
  headers: Record<string, string>,
  signed: ReadonlySet<string>,
  url: string,
  body: string,
): { sent: Record<string, string>; covered: [string, string][] } => {
  const sent: Record<string, string> = { authorization: headers.authorization! };
  const covered: [string, string][] = [];
  for (const name of [...signed].sort()) {
    const setByBroker = name === 'host' || name === 'content-length';
    const value =
      name === 'host' ? new URL(url).host : name === 'content-length' ? String(Buffer.byteLength(body)) : headers[name];
    if (value === undefined)
      return refuse(`its signature covers a ${quote(name)} header it does not carry`, 'proof_unsigned');
    covered.push([name, value]);
    if (!setByBroker) sent[name] = value;
  }
  const sessionToken = headers['x-amz-security-token'];
  if (sessionToken !== undefined) sent['x-amz-security-token'] = sessionToken;
  return { sent, covered };
};

/**
 * Checks a proof as the caller sent it. Throws InvalidRequestError for a malformed one (400) and
 * AccessDeniedError (403) for one that is well formed but not acceptable; sends nothing.
 */
export const checkIdentityProof = (raw: unknown, policy: ProofPolicy, nowMs: number): CheckedProof => {
  if (!isRecord(raw)) return malformed('must be an object with "url", "headers" and "body"');
  const extra = Object.keys(raw).find((k) => k !== 'url' && k !== 'headers' && k !== 'body');
  if (extra !== undefined) malformed('may only have "url", "headers" and "body"');
  const url = checkUrl(raw.url, policy);
  const headers = checkHeaders(raw.headers);
  if (typeof raw.body !== 'string' || !BODIES.has(raw.body)) {
    refuse('its body must be exactly Action=GetCallerIdentity&Version=2011-06-15', 'proof_not_get_caller_identity');
  }
  const { accessKeyId, credentialScope, credentialDate, service, signed, signature } = readAuthorization(
    headers.authorization,
  );
  if (service !== 'sts') refuse('it is not signed for the sts service', 'proof_not_sts');
  const audience = headers[PROOF_AUDIENCE_HEADER];
  if (audience !== policy.audience) {
    const wrong =
      audience === undefined
        ? `it has no ${PROOF_AUDIENCE_HEADER} header`
        : `its ${PROOF_AUDIENCE_HEADER} header does not name this broker`;
    refuse(`${wrong}: sign it for audience ${quote(policy.audience, 256)}`, 'proof_wrong_audience');
  }
  if (!signed.has(PROOF_AUDIENCE_HEADER))
    refuse(`its ${PROOF_AUDIENCE_HEADER} header is not signed`, 'proof_audience_unsigned');
  if (!signed.has('host') || !signed.has('x-amz-date'))
    refuse('its signature does not cover the host and x-amz-date headers (SignedHeaders)', 'proof_unsigned');
  if (headers.host !== undefined && headers.host !== new URL(url).host)
    refuse('its host header does not match its URL', 'proof_not_sts');
  if (headers['x-amz-date'] === undefined) refuse('it has no x-amz-date header', 'proof_unsigned');
  const signedAtMs = parseAmzDate(headers['x-amz-date']);
  if (signedAtMs === undefined)
    return refuse('its x-amz-date is not a time such as 20260101T120000Z', 'proof_unsigned');
  if (headers['x-amz-date']!.slice(0, 8) !== credentialDate)
    refuse('its x-amz-date is not on the date of its Credential scope', 'proof_unsigned');
  if (signedAtMs < nowMs - PROOF_MAX_AGE_MS)
    refuse('it was signed more than 5 minutes ago; sign a new one', 'proof_expired');
  if (signedAtMs > nowMs + PROOF_MAX_FUTURE_MS)
    refuse('it is dated more than 1 minute in the future', 'proof_from_future');
  const body = raw.body as string;
  const { sent, covered } = signedParts(headers, signed, url, body);
  // What the signature covers (and the session token STS will check it with), nothing the caller could pad.
  const covers = JSON.stringify([
    'proof-key-v2',
    accessKeyId,
    credentialScope,
    signature,
    covered,
    signed.has('x-amz-security-token') ? null : (sent['x-amz-security-token'] ?? null),
    url,
    body,
  ]);
  return { url, headers: sent, body, validUntilMs: signedAtMs + PROOF_MAX_AGE_MS, key: sha256Hex(covers) };
};
