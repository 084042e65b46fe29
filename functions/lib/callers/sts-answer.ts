/**
 * STS's answer to a replayed identity proof, read as untrusted text (pure; the call is sts-identity-verifier.ts's). The
 * identity is read from inside `GetCallerIdentityResult` only, in XML (STS's default) or JSON (when the caller signed
 * `accept: application/json`): exactly one result, with exactly one `Arn` and one `Account`. Anything else in the body
 * (an `<Arn>` in a message, metadata, a second result) never names the caller.
 */
import type { Caller } from '../domain/caller';
import { isRecord } from '../shared/assert';
import { AccessDeniedError, type Reason, UnavailableError } from '../shared/errors';

/** What STS said, read as untrusted text. */
export interface StsAnswer {
  status: number;
  bodyText: string;
}

const PROVEN_ARN = /^arn:(aws|aws-cn|aws-us-gov):(sts|iam)::(\d{12}):[\x21-\x7E]{1,1900}$/;
const THROTTLED = new Set([
  'Throttling',
  'ThrottlingException',
  'RequestLimitExceeded',
  'TooManyRequestsException',
  'ServiceUnavailable',
  'InternalFailure',
]);
const XML_RESULT = /<GetCallerIdentityResult>([\s\S]{0,8192}?)<\/GetCallerIdentityResult>/g;

const unavailable = (description: string, reason: Reason) => new UnavailableError(description, reason);

/** The text of the one element `name` in `xml`; undefined when there is none or more than one. */
const onlyXmlField = (xml: string, name: string): string | undefined => {
  const found = [...xml.matchAll(new RegExp(`<${name}>([^<]{1,2048})</${name}>`, 'g'))];
  return found.length === 1 && xml.split(`<${name}>`).length === 2 ? found[0]![1]!.trim() : undefined;
};

const parseJson = (text: string): unknown => {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
};

const jsonField = (value: unknown, path: string[]): string | undefined => {
  let at = value;
  for (const key of path) at = isRecord(at) ? at[key] : undefined;
  return typeof at === 'string' ? at : undefined;
};

/** Arn and Account of the answer's one GetCallerIdentityResult, XML or JSON; undefined when it has no usable one. */
const resultOf = (bodyText: string): { arn?: string; account?: string } => {
  const json = parseJson(bodyText);
  if (isRecord(json)) {
    const result = ['GetCallerIdentityResponse', 'GetCallerIdentityResult'];
    return { arn: jsonField(json, [...result, 'Arn']), account: jsonField(json, [...result, 'Account']) };
  }
  const results = [...bodyText.matchAll(XML_RESULT)];
  if (results.length !== 1 || bodyText.split('<GetCallerIdentityResult>').length !== 2) return {};
  const inside = results[0]![1]!;
  return { arn: onlyXmlField(inside, 'Arn'), account: onlyXmlField(inside, 'Account') };
};

/** STS's error code (`SignatureDoesNotMatch`, `ExpiredToken`, ...), when it gave a well-formed one. */
const errorCode = (bodyText: string): string | undefined => {
  const json = parseJson(bodyText);
  const code = isRecord(json)
    ? (jsonField(json, ['Error', 'Code']) ?? jsonField(json, ['__type']))
    : /<Code>([^<]{1,2048})<\/Code>/.exec(bodyText)?.[1]?.trim();
  return code !== undefined && /^[A-Za-z0-9.:_-]{1,64}$/.test(code) ? code : undefined;
};

/**
 * Reads STS's answer to a replayed proof: the proven identity, or why not. STS refusing the proof (a bad or
 * expired signature, unknown credentials) is access_denied 403; STS failing or throttling is temporarily_unavailable
 * 503 (never a 403 for an outage, never a token without a verified identity). Only STS's error code is kept.
 */
export const interpretStsAnswer = (answer: StsAnswer): Caller => {
  const { status, bodyText } = answer;
  if (status >= 200 && status < 300) {
    const { arn, account } = resultOf(bodyText);
    const m = arn === undefined ? null : PROVEN_ARN.exec(arn);
    if (!m || m[3] !== account) throw unavailable('STS answered without a usable identity', 'sts_malformed_answer');
    return { arn: arn!, accountId: account!, principalOrgId: undefined }; // STS names no organization
  }
  const code = errorCode(bodyText);
  const said = `HTTP ${status}${code ? `, ${code}` : ''}`;
  if (status >= 500 || status === 429 || (code !== undefined && THROTTLED.has(code)) || status < 400) {
    throw unavailable(`STS could not verify the identity proof (${said})`, 'sts_unavailable');
  }
  throw new AccessDeniedError(`identity proof refused by STS (${said})`, 'proof_refused_by_sts');
};
