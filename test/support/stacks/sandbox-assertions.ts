/**
 * private_key_jwt for the LimitRail sandbox (sandbox.ts): checks a client assertion (RFC 7523 section 3) the way a
 * strict identity provider does, with node:crypto only and nothing of the broker's code (the sandbox is the oracle the
 * broker is tested against): the JWS signature by a key of the client's registered JWK Set (RS256, PS256 with a
 * 32-byte salt, ES256 as r || s), the key chosen by `kid`; `iss` = `sub` = the client; `aud` naming the token endpoint
 * or the issuer; `exp` in the future and at most 300 s after `iat`; a `jti` never seen before (replays are refused
 * until the assertion would have expired).
 */
import { constants, createPublicKey, type JsonWebKey, verify } from 'node:crypto';

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** The longest assertion lifetime accepted (exp - iat). */
export const MAX_ASSERTION_LIFETIME_SEC = 300;
/** Clock skew tolerated on iat and exp. */
const SKEW_SEC = 30;

export interface JwkSet {
  keys: JsonWebKey[];
}

/** Why an assertion was refused: the field, and words for the ProblemDetails title (no part of the assertion). */
export interface AssertionRefusal {
  refused: true;
  field: string;
  title: string;
  /** invalid_request (malformed request) or invalid_client (authentication failed). */
  code: 'invalid_request' | 'invalid_client';
}

const refuse = (code: AssertionRefusal['code'], field: string, title: string): AssertionRefusal => ({
  refused: true,
  code,
  field,
  title,
});

const decode = (part: string | undefined): Record<string, unknown> | undefined => {
  try {
    const value: unknown = JSON.parse(Buffer.from(part ?? '', 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
};

const verifies = (alg: string, jwk: JsonWebKey, input: string, signature: Buffer): boolean => {
  try {
    const key = createPublicKey({ key: jwk, format: 'jwk' });
    if (alg === 'RS256') return key.asymmetricKeyType === 'rsa' && verify('sha256', Buffer.from(input), key, signature);
    if (alg === 'PS256')
      return (
        key.asymmetricKeyType === 'rsa' &&
        verify(
          'sha256',
          Buffer.from(input),
          { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 },
          signature,
        )
      );
    if (alg === 'ES256')
      return (
        key.asymmetricKeyType === 'ec' &&
        signature.length === 64 &&
        verify('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }, signature)
      );
  } catch {
    return false;
  }
  return false;
};

/** The replay cache of one sandbox: jti per client, kept until the assertion would have expired. */
export class SeenAssertions {
  readonly #seen = new Map<string, number>();

  /** Records `iss`/`jti`; false if it was seen (and has not expired). */
  firstUse(iss: string, jti: string, expSec: number, nowSec: number): boolean {
    for (const [key, until] of this.#seen) if (until < nowSec) this.#seen.delete(key);
    const key = JSON.stringify([iss, jti]);
    if (this.#seen.has(key)) return false;
    this.#seen.set(key, expSec + SKEW_SEC);
    return true;
  }
}

export interface AssertionContext {
  assertionType: string | undefined;
  /** The form's client_id, if sent: must be the assertion's issuer. */
  formClientId: string | undefined;
  /** The JWK Set registered for a client id, if it is a private_key_jwt client. */
  jwksOf: (clientId: string) => JwkSet | undefined;
  /** What `aud` may name: the token endpoint URL and the issuer. */
  audiences: readonly string[];
  seen: SeenAssertions;
  nowSec: number;
}

/** The client an assertion authenticates, or why it does not. */
export const checkClientAssertion = (
  assertion: string,
  ctx: AssertionContext,
): { refused: false; clientId: string } | AssertionRefusal => {
  if (ctx.assertionType !== CLIENT_ASSERTION_TYPE)
    return refuse('invalid_request', 'client_assertion_type', `client_assertion_type must be ${CLIENT_ASSERTION_TYPE}`);
  const parts = assertion.split('.');
  const header = decode(parts[0]);
  const claims = decode(parts[1]);
  if (parts.length !== 3 || !header || !claims || !/^[A-Za-z0-9_-]+$/.test(parts[2] ?? ''))
    return refuse('invalid_request', 'client_assertion', 'Malformed client assertion');
  const failed = (title: string) => refuse('invalid_client', 'client_assertion', title);
  const { iss, sub, aud, exp, iat, jti } = claims;
  if (typeof iss !== 'string' || iss !== sub) return failed('Client assertion iss and sub must both be the client id');
  if (ctx.formClientId !== undefined && ctx.formClientId !== iss)
    return refuse('invalid_request', 'client_id', 'Parameter client_id does not match the client assertion');
  const jwks = ctx.jwksOf(iss);
  if (!jwks) return failed('Client authentication failed');
  const alg = String(header.alg);
  const candidates = jwks.keys.filter((k) =>
    header.kid === undefined ? jwks.keys.length === 1 : k.kid === header.kid,
  );
  const signature = Buffer.from(parts[2]!, 'base64url');
  if (!candidates.some((jwk) => verifies(alg, jwk, `${parts[0]}.${parts[1]}`, signature)))
    return failed('Client assertion signature does not verify with a registered key');
  const audiences = Array.isArray(aud) ? aud : [aud];
  if (!audiences.some((a) => typeof a === 'string' && ctx.audiences.includes(a)))
    return failed('Client assertion aud must name the token endpoint');
  if (typeof exp !== 'number' || typeof iat !== 'number') return failed('Client assertion needs exp and iat');
  if (exp <= ctx.nowSec - SKEW_SEC) return failed('Client assertion has expired');
  if (iat > ctx.nowSec + SKEW_SEC) return failed('Client assertion is issued in the future');
  if (exp - iat > MAX_ASSERTION_LIFETIME_SEC)
    return failed(`Client assertion lifetime exceeds ${MAX_ASSERTION_LIFETIME_SEC} seconds`);
  if (typeof jti !== 'string' || jti === '') return failed('Client assertion needs a jti');
  if (!ctx.seen.firstUse(iss, jti, exp, ctx.nowSec)) return failed('Client assertion was already used');
  return { refused: false, clientId: iss };
};
