import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Container, startContainer } from '../support/process/container';
import { bundleRuntimes } from '../support/process/node-runtimes';
import { setupLocalAws } from '../support/stacks/aws-setup';
import { awsEnv, REGION } from '../support/stacks/broker-stack';
import { type MotoServer, startMoto } from '../support/stacks/moto';
import { type OidcServer, startOidcServer } from '../support/stacks/oidc-server';

/**
 * The built bundle (dist/token/handler.js, what Lambda runs) in real OS processes, against an independent OAuth
 * server (oidc-provider, client_credentials) and moto_server. Each process is a container with its own memory; the
 * whole file runs on this machine's Node and on the deploy runtime's major (Node 24), each with its own servers.
 */
describe.each(bundleRuntimes().map((runtime) => [runtime.label, runtime] as const))(
  'built token bundle against oidc-provider, on %s',
  (_label, runtime) => {
    const tableName = `tokens-oidc-${runtime.version.replace(/\W/g, '')}`;
    let moto: MotoServer;
    let oidc: OidcServer;
    let env: Record<string, string>;
    const containers: Container[] = [];

    const container = async () => {
      const c = await startContainer('token', env, { execPath: runtime.execPath });
      containers.push(c);
      return c;
    };

    beforeAll(async () => {
      if (!existsSync('dist/token/handler.js'))
        throw new Error('dist/token/handler.js is missing: run `npm run build` (npm test does)');
      [moto, oidc] = await Promise.all([startMoto(), startOidcServer({ accessTokenTtlSec: 1800 })]);
      const { kmsKeyId } = await setupLocalAws({
        endpoint: moto.endpoint,
        region: REGION,
        tableName,
        secretId: 'oidc/client',
        secretValue: { client_id: oidc.clientId, client_secret: oidc.clientSecret },
      });
      env = {
        ...awsEnv(moto.endpoint),
        CALLER_AUTH: 'invoke-permission', // the token path against another OAuth server; identity.test.ts proves callers
        ALLOW_LOOPBACK_TOKEN_URL: 'true', // oidc-provider listens on 127.0.0.1
        TOKEN_TABLE_NAME: tableName,
        TOKEN_KMS_KEY_ID: kmsKeyId,
        BROKER_CLIENTS: JSON.stringify({
          oidc: { secretId: 'oidc/client', tokenUrl: oidc.tokenUrl, scopes: oidc.scopes },
        }),
      };
    });

    afterAll(async () => {
      await Promise.allSettled(containers.map((c) => c.stop()));
      await Promise.allSettled([oidc?.stop(), moto?.stop()]);
    });

    const tokens: string[] = [];

    it('gets a token from a real OAuth server, then serves repeats from cache', async () => {
      const c = await container();
      const first = (await c.invoke({ scopes: [...oidc.scopes].reverse() })) as Record<string, unknown>;
      expect(first).toMatchObject({ token_type: 'Bearer', scope: [...oidc.scopes].sort().join(' '), client: 'oidc' });
      expect(first.expires_in).toBeGreaterThan(1790);
      expect(first.expires_in).toBeLessThanOrEqual(1800);
      tokens.push(first.access_token as string);
      for (let i = 0; i < 5; i++) {
        const again = (await c.invoke({ scopes: oidc.scopes })) as Record<string, unknown>;
        expect(again.access_token).toBe(first.access_token);
      }
      expect(oidc.tokenRequests()).toBe(1);
    });

    it('serves a second container from the table', async () => {
      const c = await container();
      const answer = (await c.invoke({ client: 'oidc', scopes: oidc.scopes })) as Record<string, unknown>;
      expect(answer.access_token).toBe(tokens[0]);
      expect(oidc.tokenRequests()).toBe(1);
    });

    it('fetches a separate token for another scope set', async () => {
      const c = await container();
      const answer = (await c.invoke({ scopes: [oidc.scopes[0]] })) as Record<string, unknown>;
      expect(answer.scope).toBe(oidc.scopes[0]);
      expect(answer.access_token).not.toBe(tokens[0]);
      tokens.push(answer.access_token as string);
      expect(oidc.tokenRequests()).toBe(2);
    });

    it('returns bad-input errors without throwing', async () => {
      const c = await container();
      expect(await c.invoke({ scopes: ['nope'] })).toMatchObject({ error: 'invalid_scope', status: 400 });
      expect(await c.invoke('not an object')).toMatchObject({ error: 'invalid_request', status: 400 });
      expect(oidc.tokenRequests()).toBe(2);
    });

    it('logs structured lines but never the client secret or a token', () => {
      const logs = containers.map((c) => c.logs()).join('\n');
      expect(logs).toContain('"message":"token served"');
      expect(logs).not.toContain(oidc.clientSecret);
      for (const token of tokens) expect(logs).not.toContain(token);
    });
  },
);
