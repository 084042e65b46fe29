import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { type OidcServer, startOidcServer } from '../support/stacks/oidc-server';

async function requestToken(server: OidcServer, form: Record<string, string>, headers: Record<string, string> = {}) {
  const response = await fetch(server.tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

describe('oidc-provider test server (client_credentials)', () => {
  let server: OidcServer;

  beforeAll(async () => {
    server = await startOidcServer({ accessTokenTtlSec: 120 });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('issues a Bearer token with the configured expires_in and the requested scope, and counts the request', async () => {
    const before = server.tokenRequests();
    const { status, body } = await requestToken(server, {
      grant_type: 'client_credentials',
      client_id: server.clientId,
      client_secret: server.clientSecret,
      scope: server.scopes.join(' '),
    });
    expect(status).toBe(200);
    expect(body).toEqual({
      access_token: expect.stringMatching(/^\S{20,}$/),
      token_type: 'Bearer',
      expires_in: 120,
      scope: 'limitrail.usage.read limitrail.usage.write',
    });
    expect(server.tokenRequests()).toBe(before + 1);
  });

  it('accepts the same client credentials via HTTP Basic auth', async () => {
    const basic = Buffer.from(
      `${encodeURIComponent(server.clientId)}:${encodeURIComponent(server.clientSecret)}`,
    ).toString('base64');
    const { status, body } = await requestToken(
      server,
      { grant_type: 'client_credentials', scope: 'limitrail.usage.read' },
      { authorization: `Basic ${basic}` },
    );
    expect(status).toBe(200);
    expect(body.scope).toBe('limitrail.usage.read');
  });

  it('rejects a wrong client secret with 401 invalid_client, still counting the request', async () => {
    const before = server.tokenRequests();
    const { status, body } = await requestToken(server, {
      grant_type: 'client_credentials',
      client_id: server.clientId,
      client_secret: `${server.clientSecret}x`,
      scope: 'limitrail.usage.read',
    });
    expect(status).toBe(401);
    expect(body.error).toBe('invalid_client');
    expect(server.tokenRequests()).toBe(before + 1);
  });

  it('does not count requests to other endpoints as token requests', async () => {
    const before = server.tokenRequests();
    const discovery = await fetch(`${server.issuer}/.well-known/openid-configuration`);
    expect(discovery.status).toBe(200);
    expect(((await discovery.json()) as { token_endpoint?: string }).token_endpoint).toBe(server.tokenUrl);
    expect(server.tokenRequests()).toBe(before);
  });
});
