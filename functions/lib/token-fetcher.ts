import { tokenFingerprint } from './cache-key';
import type { Clock } from './clock';
import type { ClientConfig } from './config';
import { ConfigurationError, UnavailableError, quote } from './errors';
import type { Logger } from './logger';
import type { SecretSource } from './secret-source';
import { requestToken as httpRequestToken } from './token-endpoint';
import { type CachedToken, lifetimeOf } from './token-lifetime';

/** Below this much time left before the deadline, no token request is started. */
const MIN_REQUEST_BUDGET_MS = 100;

/**
 * Fetches one token from the token endpoint: the client's credentials, the request within the time left, and the
 * token's lifetime. A refresh that gets back the token it was meant to replace marks it re-issued.
 */
export class TokenFetcher {
  constructor(
    private readonly secrets: SecretSource,
    private readonly clock: Clock,
    private readonly timeoutMs: number,
    private readonly request: typeof httpRequestToken = httpRequestToken,
  ) {}

  async fetch(
    client: ClientConfig,
    scopes: readonly string[],
    deadlineMs: number,
    log: Logger,
    previous?: CachedToken,
  ): Promise<CachedToken> {
    const credentials = await this.secrets.get(client.secretId);
    if (client.clientId !== undefined && credentials.clientId !== client.clientId) {
      throw new ConfigurationError(
        `secret ${quote(client.secretId, 256)} holds another client_id than ${quote(client.name)} is configured with`,
        'secret_client_mismatch',
      );
    }
    const sentAtMs = this.clock.nowMs();
    const budgetMs = Math.min(this.timeoutMs, deadlineMs - sentAtMs);
    if (budgetMs < MIN_REQUEST_BUDGET_MS) {
      throw new UnavailableError('no time left in this invocation to call the token endpoint', 'deadline_exceeded');
    }
    const grant = await this.request(client.tokenUrl, credentials, { clientName: client.name, secretId: client.secretId, scopes }, budgetMs);
    const fresh = lifetimeOf(sentAtMs, grant.expiresInSec);
    const reissued = previous !== undefined && previous.accessToken === grant.accessToken;
    const token: CachedToken = reissued
      ? { ...fresh, accessToken: grant.accessToken, scopes: grant.scopes, issuedAtEpochSec: previous.issuedAtEpochSec, refreshAtEpochSec: fresh.expiresAtEpochSec, reissued }
      : { ...fresh, accessToken: grant.accessToken, scopes: grant.scopes };
    log.info('token fetched from the token endpoint', {
      client: client.name,
      scopes,
      latencyMs: this.clock.nowMs() - sentAtMs,
      expiresInSec: grant.expiresInSec,
      tokenFingerprint: tokenFingerprint(token.accessToken),
      ...(reissued ? { reissued } : {}),
    });
    if (reissued) log.warn('token endpoint re-issued the token being refreshed; no refresh before it expires', { client: client.name, scopes });
    return token;
  }
}
