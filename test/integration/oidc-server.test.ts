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

describe('oidc-provider test server options', () => {
  it('with client_secret_basic only, refuses the secret in the form body, and records how each request authenticated', async () => {
    const server = await startOidcServer({
      clientAuthMethods: ['client_secret_basic'],
      resources: ['https://a.example/'],
    });
    try {
      const form = { grant_type: 'client_credentials', scope: 'limitrail.usage.read', audience: 'https://api.example' };
      const post = await requestToken(server, {
        ...form,
        client_id: server.clientId,
        client_secret: server.clientSecret,
      });
      expect(post).toMatchObject({ status: 401, body: { error: 'invalid_client' } });
      const basic = Buffer.from(`${server.clientId}:${encodeURIComponent(server.clientSecret)}`).toString('base64');
      const served = await requestToken(
        server,
        { ...form, resource: 'https://a.example/' },
        { authorization: `Basic ${basic}` },
      );
      expect(served.status).toBe(200);
      const unknown = await requestToken(
        server,
        { ...form, resource: 'https://b.example/' },
        { authorization: `Basic ${basic}` },
      );
      expect(unknown).toMatchObject({ status: 400, body: { error: 'invalid_target' } });
      expect(server.received()).toEqual([
        {
          status: 401,
          clientId: undefined,
          presented: 'post',
          error: 'invalid_client',
          scope: 'limitrail.usage.read',
          audience: 'https://api.example',
          resource: [],
        },
        {
          status: 200,
          clientId: server.clientId,
          presented: 'basic',
          error: undefined,
          scope: 'limitrail.usage.read',
          audience: 'https://api.example',
          resource: ['https://a.example/'],
        },
        {
          status: 400,
          clientId: undefined,
          presented: 'basic',
          error: 'invalid_target',
          scope: 'limitrail.usage.read',
          audience: 'https://api.example',
          resource: ['https://b.example/'],
        },
      ]);
      expect(JSON.stringify(server.received())).not.toContain(server.clientSecret);
    } finally {
      await server.stop();
    }
  });
});
