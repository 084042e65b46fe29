/** An upstream OAuth client's credentials, as read from its secret. */

/**
 * OAuth client credentials read from a secret. The secret is held in a private field, so it does not show in
 * JSON.stringify, util.inspect or console.log of this object.
 */
export class ClientCredentials {
  readonly #clientSecret: string;

  constructor(
    readonly secretId: string,
    readonly clientId: string,
    clientSecret: string,
    readonly versionId: string | undefined,
  ) {
    this.#clientSecret = clientSecret;
  }

  clientSecret(): string {
    return this.#clientSecret;
  }

  toJSON() {
    return { secretId: this.secretId, clientId: this.clientId, versionId: this.versionId };
  }
}
