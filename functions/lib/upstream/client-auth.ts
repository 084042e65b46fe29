/**
 * How a token request authenticates the client, one implementation per `authMethod`:
 *   - client_secret_post (RFC 6749 section 2.3.1): `client_id` and `client_secret` in the form body, as the LimitRail
 *     contract asks;
 *   - client_secret_basic (RFC 6749 section 2.3.1): HTTP Basic, each of id and secret form-urlencoded before base64
 *     (what makes `:`, `%`, `+` and non-ASCII survive), nothing secret in the body;
 *   - private_key_jwt (RFC 7523 section 2.2, OpenID Connect Core section 9): a short-lived JWT signed by a KMS key
 *     (AssertionSigner), no secret anywhere.
 * Each yields a ClientAuthentication, which holds the credential in private fields: it never shows in a log line, an
 * error or JSON.stringify.
 */
import { randomUUID } from 'node:crypto';
import type { ClientCredentials } from '../domain/client-credentials';
import type { ClientAuthMethod, SecretAuth } from '../domain/settings';
import type { SigningKey } from '../domain/signing-key';
import type { AssertionSigner } from '../ports';

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** How long a client assertion is valid: one token request, with room for clock skew (at most 300 s allowed). */
export const ASSERTION_LIFETIME_SEC = 60;

/** A request's client authentication: form fields and headers, kept private; serializes as its method only. */
export class ClientAuthentication {
  readonly #form: Readonly<Record<string, string>>;
  readonly #headers: Readonly<Record<string, string>>;

  constructor(
    readonly method: ClientAuthMethod,
    form: Record<string, string>,
    headers: Record<string, string> = {},
  ) {
    this.#form = form;
    this.#headers = headers;
  }

  /** Adds the client's credentials to a token request's form and headers. */
  applyTo(form: URLSearchParams, headers: Record<string, string>): void {
    for (const [name, value] of Object.entries(this.#form)) form.append(name, value);
    Object.assign(headers, this.#headers);
  }

  toJSON() {
    return { method: this.method };
  }
}

/** `application/x-www-form-urlencoded` encoding of one value (RFC 6749 appendix B), as section 2.3.1 asks for Basic. */
export const formUrlEncode = (value: string): string => new URLSearchParams([['', value]]).toString().slice(1);

export const clientSecretPost = (credentials: ClientCredentials): ClientAuthentication =>
  new ClientAuthentication('client_secret_post', {
    client_id: credentials.clientId,
    client_secret: credentials.clientSecret(),
  });

export const clientSecretBasic = (credentials: ClientCredentials): ClientAuthentication => {
  const pair = `${formUrlEncode(credentials.clientId)}:${formUrlEncode(credentials.clientSecret())}`;
  return new ClientAuthentication(
    'client_secret_basic',
    {},
    { authorization: `Basic ${Buffer.from(pair).toString('base64')}` },
  );
};

/** The secret method a client is configured with, on credentials read from its secret. */
export const secretAuthentication = (auth: SecretAuth, credentials: ClientCredentials): ClientAuthentication =>
  auth.method === 'client_secret_basic' ? clientSecretBasic(credentials) : clientSecretPost(credentials);

/** The claims of a client assertion (RFC 7523 section 3): issued by and about the client, for `audience`, once. */
export const assertionClaims = (clientId: string, audience: string, nowSec: number, jti: string = randomUUID()) => ({
  iss: clientId,
  sub: clientId,
  aud: audience,
  iat: nowSec,
  exp: nowSec + ASSERTION_LIFETIME_SEC,
  jti,
});

const base64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

/**
 * private_key_jwt: a JWS (compact) over the claims with the header `{ alg, typ: JWT, kid }`, signed by `key` through
 * `signer`; a new `jti` each time, so a retried request never replays an assertion. `client_id` is sent too (RFC
 * 7523 makes it optional; some servers want it).
 */
export const privateKeyJwt = async (
  clientId: string,
  audience: string,
  key: SigningKey,
  signer: AssertionSigner,
  nowSec: number,
): Promise<ClientAuthentication> => {
  const signingInput = `${base64url({ alg: key.algorithm, typ: 'JWT', kid: key.kid })}.${base64url(assertionClaims(clientId, audience, nowSec))}`;
  const signature = Buffer.from(await signer.sign(key, signingInput)).toString('base64url');
  return new ClientAuthentication('private_key_jwt', {
    client_id: clientId,
    client_assertion_type: CLIENT_ASSERTION_TYPE,
    client_assertion: `${signingInput}.${signature}`,
  });
};
