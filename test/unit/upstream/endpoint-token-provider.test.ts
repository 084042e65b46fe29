import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../functions/lib/config/load-config';
import { ClientCredentials } from '../../../functions/lib/domain/client-credentials';
import type { CredentialSource } from '../../../functions/lib/ports';
import { UnavailableError } from '../../../functions/lib/shared/errors';
import { EndpointTokenProvider } from '../../../functions/lib/upstream/endpoint-token-provider';
import type { IssuedToken } from '../../../functions/lib/upstream/token-endpoint';
import { silentLog } from '../../support/fakes/lease-world';

/**
 * One token fetch's retries on a fake clock that the fetcher's own sleep moves: how long it waits and when it gives
 * up are exact, not timed. The token endpoint and the secret are fakes behind the fetcher's interfaces.
 */
const START_MS = Date.parse('2026-11-29T06:00:00Z');
const client = loadConfig({
  CALLER_PROOF_AUDIENCE: 'broker',
  TOKEN_TABLE_NAME: 't',
  TOKEN_KMS_KEY_ID: 'k',
  BROKER_CLIENTS: JSON.stringify({
    limitrail: { secretId: 's', tokenUrl: 'https://auth.example/connect/token', clientId: 'lr_1', scopes: ['a'] },
  }),
}).clients.get('limitrail')!;
const secrets: CredentialSource = {
  get: async () => new ClientCredentials('s', 'lr_1', 'secret', 'v1'),
  previous: async () => undefined,
  remember: () => undefined,
};

const setup = (answers: (IssuedToken | UnavailableError)[]) => {
  let nowMs = START_MS;
  const clock = { nowMs: () => nowMs };
  const attemptsAtMs: number[] = [];
  const slept: number[] = [];
  const fetcher = new EndpointTokenProvider(secrets, clock, {
    timeoutMs: 5_000,
    maxAttempts: 3,
    random: () => 0.5,
    sleep: async (ms) => {
      slept.push(ms);
      nowMs += ms;
    },
    request: async () => {
      attemptsAtMs.push(nowMs);
      const next = answers.shift()!;
      if (next instanceof Error) throw next;
      return next;
    },
  });
  const degraded: string[] = [];
  const ctx = (deadlineMs: number) => ({
    client,
    scopes: ['a'],
    deadlineMs,
    log: silentLog,
    keyFields: {},
    degraded: (kind: string) => void degraded.push(kind),
  });
  return { fetcher, ctx, attemptsAtMs, slept, degraded };
};
const down = () => new UnavailableError('the token endpoint failed (HTTP 503)', 'upstream_unavailable');
const grant: IssuedToken = { accessToken: 'eyJ.a.b', expiresInSec: 3600, scopes: ['a'] };

describe('token fetch retries (fake clock)', () => {
  it('retries a 5xx with capped, jittered backoff and succeeds on the third attempt', async () => {
    const t = setup([down(), down(), grant]);
    const token = await t.fetcher.fetch(t.ctx(START_MS + 10_000));
    expect(token.accessToken).toBe('eyJ.a.b');
    expect(t.slept).toEqual([50, 100]); // random 0.5 of 100 ms, then of 200 ms
    expect(t.attemptsAtMs).toEqual([START_MS, START_MS + 50, START_MS + 150]);
  });

  it('honours Retry-After over its own backoff', async () => {
    const t = setup([new UnavailableError('rate limited', 'upstream_rate_limited', { retryAfterMs: 2_000 }), grant]);
    await t.fetcher.fetch(t.ctx(START_MS + 10_000));
    expect(t.slept).toEqual([2_000]);
  });

  it('stops at once when the next attempt would not fit before the deadline, and says so', async () => {
    const t = setup([new UnavailableError('rate limited', 'upstream_rate_limited', { retryAfterMs: 5_000 }), grant]);
    await expect(t.fetcher.fetch(t.ctx(START_MS + 3_000))).rejects.toMatchObject({
      reason: 'upstream_rate_limited',
      status: 503,
    });
    expect(t.attemptsAtMs).toHaveLength(1);
    expect(t.slept).toEqual([]);
    expect(t.degraded).toEqual(['retries_exhausted']);
  });
});
