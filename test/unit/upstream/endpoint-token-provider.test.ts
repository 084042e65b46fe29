import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../functions/lib/config/load-config';
import { tokenFingerprint } from '../../../functions/lib/domain/cache-key';
import { lifetimeOf } from '../../../functions/lib/domain/cached-token';
import { ClientCredentials } from '../../../functions/lib/domain/client-credentials';
import type { CredentialSource } from '../../../functions/lib/ports';
import { UnavailableError, UpstreamError } from '../../../functions/lib/shared/errors';
import type { Log } from '../../../functions/lib/shared/logger';
import type { MetricsSink } from '../../../functions/lib/shared/metrics';
import { EndpointTokenProvider, MIN_REQUEST_BUDGET_MS } from '../../../functions/lib/upstream/endpoint-token-provider';
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

/** Every info and warn line, with its message, as operators query them. */
const recordingLog = () => {
  const lines: Record<string, unknown>[] = [];
  const log: Log = {
    child: () => log,
    debug: () => undefined,
    info: (message, fields) => void lines.push({ level: 'info', message, ...fields }),
    warn: (message, fields) => void lines.push({ level: 'warn', message, ...fields }),
    error: () => undefined,
  };
  return { log, lines };
};

/** The endpoint's answers in order (an error is thrown), each taking `requestMs` on the fake clock. */
const setup = (answers: (IssuedToken | Error)[], requestMs = 0) => {
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
      nowMs += requestMs;
      const next = answers.shift()!;
      if (next instanceof Error) throw next;
      return next;
    },
  });
  const degraded: string[] = [];
  const reported: unknown[][] = [];
  const { log, lines } = recordingLog();
  const counted: Record<string, number> = {};
  const recorded: Record<string, number[]> = {};
  const metrics: MetricsSink = {
    count: (name, n = 1) => {
      counted[name] = (counted[name] ?? 0) + n;
    },
    record: (name, value) => {
      recorded[name] = [...(recorded[name] ?? []), value];
    },
  };
  const ctx = (deadlineMs: number) => ({
    client,
    scopes: ['a'],
    deadlineMs,
    log,
    metrics,
    keyFields: { client: 'limitrail' },
    degraded: (kind: string, ...rest: unknown[]) => {
      degraded.push(kind);
      reported.push([kind, ...rest]);
    },
  });
  return { fetcher, ctx, attemptsAtMs, slept, degraded, reported, lines, counted, recorded };
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

describe('token fetch limits (fake clock)', () => {
  it('gives up after TOKEN_ENDPOINT_MAX_ATTEMPTS retryable failures, saying how many', async () => {
    const t = setup([down(), down(), down(), grant]);
    const err = await t.fetcher.fetch(t.ctx(START_MS + 10_000)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err).toMatchObject({
      message: 'the token endpoint failed (HTTP 503) (3 attempts)',
      reason: 'upstream_unavailable',
      cause: expect.any(UnavailableError),
    });
    expect(t.attemptsAtMs).toHaveLength(3);
    expect(t.slept).toEqual([50, 100]);
    expect(t.degraded).toEqual(['retries_exhausted']);
  });

  it('says when it stopped for lack of time rather than attempts, keeping the Retry-After', async () => {
    const limited = new UnavailableError('rate limited', 'upstream_rate_limited', { retryAfterMs: 5_000 });
    const t = setup([limited, grant]);
    await expect(t.fetcher.fetch(t.ctx(START_MS + 3_000))).rejects.toMatchObject({
      message: 'rate limited (no time left for another attempt)',
      retryAfterMs: 5_000,
    });
  });

  it('never retries a failure that is not retryable', async () => {
    const refused = new UpstreamError('the token endpoint refused the token request (HTTP 400)', 'upstream_refused');
    const t = setup([refused, grant]);
    await expect(t.fetcher.fetch(t.ctx(START_MS + 10_000))).rejects.toBe(refused);
    expect(t.attemptsAtMs).toHaveLength(1);
    expect(t.degraded).toEqual([]);
  });

  it('gives each attempt the time left, at most TOKEN_ENDPOINT_TIMEOUT_MS, and makes none with less than MIN_REQUEST_BUDGET_MS', async () => {
    const budgets: number[] = [];
    const fetcherWith = (deadlineMs: number) => {
      const fetcher = new EndpointTokenProvider(
        secrets,
        { nowMs: () => START_MS },
        {
          timeoutMs: 5_000,
          maxAttempts: 3,
          request: async (_url, _credentials, _ctx, budgetMs) => {
            budgets.push(budgetMs);
            return grant;
          },
        },
      );
      return fetcher.fetch({ client, scopes: ['a'], deadlineMs, log: silentLog, keyFields: {}, degraded: () => {} });
    };
    await fetcherWith(START_MS + 60_000);
    await fetcherWith(START_MS + 2_000);
    await fetcherWith(START_MS + MIN_REQUEST_BUDGET_MS);
    expect(budgets).toEqual([5_000, 2_000, MIN_REQUEST_BUDGET_MS]);
    await expect(fetcherWith(START_MS + MIN_REQUEST_BUDGET_MS - 1)).rejects.toMatchObject({
      message: 'no time left in this invocation to call the token endpoint',
      reason: 'deadline_exceeded',
    });
    expect(budgets).toHaveLength(3);
  });

  it('marks a token re-issued when the endpoint answers the token being refreshed, keeping its issue time', async () => {
    const t = setup([grant]);
    const previous = { accessToken: grant.accessToken, scopes: ['a'], ...lifetimeOf(START_MS - 3_000_000, 3600) };
    const token = await t.fetcher.fetch({ ...t.ctx(START_MS + 10_000), previous });
    expect(token).toMatchObject({
      accessToken: grant.accessToken,
      reissued: true,
      issuedAtEpochSec: previous.issuedAtEpochSec,
      refreshAtEpochSec: token.expiresAtEpochSec,
    });
    const other = await setup([grant]).fetcher.fetch({
      ...t.ctx(START_MS + 10_000),
      previous: { ...previous, accessToken: 'another' },
    });
    expect(other.reissued).toBeUndefined();
    expect(other.refreshAtEpochSec).toBeLessThan(other.expiresAtEpochSec);
  });
});

describe('token fetch boundaries (fake clock)', () => {
  it('retries when the wait leaves exactly MIN_REQUEST_BUDGET_MS before the deadline, and not when 1 ms less', async () => {
    // The first failure waits 50 ms (random 0.5 of 100 ms): 50 + MIN_REQUEST_BUDGET_MS fits a deadline 150 ms away.
    const fits = setup([down(), grant]);
    expect((await fits.fetcher.fetch(fits.ctx(START_MS + 50 + MIN_REQUEST_BUDGET_MS))).accessToken).toBe('eyJ.a.b');
    expect(fits.slept).toEqual([50]);
    const short = setup([down(), grant]);
    await expect(short.fetcher.fetch(short.ctx(START_MS + 50 + MIN_REQUEST_BUDGET_MS - 1))).rejects.toMatchObject({
      message: 'the token endpoint failed (HTTP 503) (no time left for another attempt)',
      reason: 'upstream_unavailable',
    });
    expect(short.attemptsAtMs).toHaveLength(1);
    expect(short.slept).toEqual([]);
  });

  it('says it used up its attempts when the last allowed attempt would not have fitted either', async () => {
    const limited = new UnavailableError('rate limited', 'upstream_rate_limited', { retryAfterMs: 60_000 });
    const t = setup([down(), down(), limited]);
    await expect(t.fetcher.fetch(t.ctx(START_MS + 10_000))).rejects.toMatchObject({
      message: 'rate limited (3 attempts)',
      reason: 'upstream_rate_limited',
    });
    expect(t.reported).toEqual([['retries_exhausted', 'upstream_rate_limited', { attempts: 3 }]]);
  });

  it('logs each retry with its reason, attempt and wait, and reports retries_exhausted with the attempts made', async () => {
    const t = setup([down(), down(), down()]);
    await expect(t.fetcher.fetch(t.ctx(START_MS + 10_000))).rejects.toMatchObject({ reason: 'upstream_unavailable' });
    const retrying = { level: 'info', message: 'token request failed, retrying', client: 'limitrail' };
    expect(t.lines).toEqual([
      { ...retrying, reason: 'upstream_unavailable', attempt: 1, delayMs: 50 },
      { ...retrying, reason: 'upstream_unavailable', attempt: 2, delayMs: 100 },
    ]);
    expect(t.reported).toEqual([['retries_exhausted', 'upstream_unavailable', { attempts: 3 }]]);
    expect(t.counted).toEqual({ UpstreamRequests: 3, UpstreamErrors: 3, 'UpstreamError.upstream_unavailable': 3 });
  });

  it('counts a request failing with an unexpected error as UpstreamError.unexpected, and does not retry it', async () => {
    const boom = new TypeError('boom');
    const t = setup([boom, grant]);
    await expect(t.fetcher.fetch(t.ctx(START_MS + 10_000))).rejects.toBe(boom);
    expect(t.attemptsAtMs).toHaveLength(1);
    expect(t.counted).toEqual({ UpstreamRequests: 1, UpstreamErrors: 1, 'UpstreamError.unexpected': 1 });
    expect(t.reported).toEqual([]);
  });
});

describe('token fetch log and metrics (fake clock)', () => {
  it('logs the fetch with the key fields, its latency on the clock, the lifetime and the fingerprint; records the UpstreamLatency of the request that answered', async () => {
    const t = setup([down(), grant], 120);
    const token = await t.fetcher.fetch(t.ctx(START_MS + 10_000));
    expect(t.lines.filter((l) => l.message !== 'token request failed, retrying')).toEqual([
      {
        level: 'info',
        message: 'token fetched from the token endpoint',
        client: 'limitrail',
        latencyMs: 120 + 50 + 120, // both attempts and the wait between them
        expiresInSec: 3600,
        tokenFingerprint: tokenFingerprint(token.accessToken),
      },
    ]);
    expect(t.recorded).toEqual({ UpstreamLatency: [120] }); // of the request that answered
  });

  it('flags a re-issued token in the fetch line and warns that it will not be refreshed before it expires', async () => {
    const t = setup([grant], 20);
    const previous = { accessToken: grant.accessToken, scopes: ['a'], ...lifetimeOf(START_MS - 3_000_000, 3600) };
    await t.fetcher.fetch({ ...t.ctx(START_MS + 10_000), previous });
    expect(t.lines).toEqual([
      {
        level: 'info',
        message: 'token fetched from the token endpoint',
        client: 'limitrail',
        latencyMs: 20,
        expiresInSec: 3600,
        tokenFingerprint: tokenFingerprint(grant.accessToken),
        reissued: true,
      },
      {
        level: 'warn',
        message: 'token endpoint re-issued the token being refreshed; no refresh before it expires',
        client: 'limitrail',
      },
    ]);
  });
});

describe('secret rotation (fake secret versions)', () => {
  const rejected = () =>
    new UpstreamError(
      'the token endpoint rejected the client credentials in secret "s" (HTTP 401)',
      'upstream_invalid_client',
    );
  /** The secret's versions as Secrets Manager would answer, and the secrets the endpoint accepts. */
  const rotation = (
    versions: { cached: string; current: string; previous?: string },
    accepted: string[],
    failures: Record<string, Error> = {},
  ) => {
    const remembered: string[] = [];
    const tried: string[] = [];
    const { log, lines } = recordingLog();
    const credentials = (version: string) => new ClientCredentials('s', 'lr_1', `secret-${version}`, version);
    const source: CredentialSource = {
      get: async (_id, options) => credentials(options?.fresh ? versions.current : versions.cached),
      previous: async () => (versions.previous ? credentials(versions.previous) : undefined),
      remember: (c) => void remembered.push(c.versionId!),
    };
    const fetcher = new EndpointTokenProvider(
      source,
      { nowMs: () => START_MS },
      {
        timeoutMs: 5_000,
        maxAttempts: 3,
        request: async (_url, auth) => {
          // The secret version a request authenticated with, read from the form it would send (secret-<version>).
          const form = new URLSearchParams();
          auth.applyTo(form, {});
          const version = form.get('client_secret')!.replace('secret-', '');
          tried.push(version);
          if (failures[version]) throw failures[version];
          if (!accepted.includes(version)) throw rejected();
          return grant;
        },
      },
    );
    const fetch = () =>
      fetcher.fetch({
        client,
        scopes: ['a'],
        deadlineMs: START_MS + 10_000,
        log,
        keyFields: { client: 'limitrail' },
        degraded: () => {},
      });
    return { fetch, tried, remembered, lines };
  };

  const tryingAnother = (secretVersion: string) => ({
    level: 'warn',
    message: 'token endpoint rejected the cached client credentials; trying another secret version',
    client: 'limitrail',
    secretVersion,
  });

  it('tries the new current version when the cached one is rejected, and keeps it', async () => {
    const r = rotation({ cached: 'v1', current: 'v2', previous: 'v1' }, ['v2']);
    expect((await r.fetch()).accessToken).toBe(grant.accessToken);
    expect(r.tried).toEqual(['v1', 'v2']);
    expect(r.remembered).toEqual(['v2']);
    expect(r.lines.filter((l) => l.level === 'warn')).toEqual([tryingAnother('the new current version')]);
  });

  it('tries AWSPREVIOUS when the current version is the one rejected (the endpoint has not activated it yet)', async () => {
    const r = rotation({ cached: 'v2', current: 'v2', previous: 'v1' }, ['v1']);
    expect((await r.fetch()).accessToken).toBe(grant.accessToken);
    expect(r.tried).toEqual(['v2', 'v1']);
    expect(r.remembered).toEqual(['v1']);
    expect(r.lines.filter((l) => l.level === 'warn')).toEqual([tryingAnother('AWSPREVIOUS')]);
  });

  it('never sends the rejected version again, even when AWSPREVIOUS names that same version', async () => {
    const r = rotation({ cached: 'v1', current: 'v1', previous: 'v1' }, []);
    await expect(r.fetch()).rejects.toMatchObject({
      reason: 'upstream_invalid_client',
      message: expect.stringContaining('; tried its only version'),
    });
    expect(r.tried).toEqual(['v1']);
    expect(r.lines.filter((l) => l.level === 'warn')).toEqual([]);
  });

  it('answers any other failure of the next version as it is, not as rejected credentials', async () => {
    const refused = new UpstreamError('the token endpoint refused the token request (HTTP 400)', 'upstream_refused');
    const r = rotation({ cached: 'v1', current: 'v2', previous: 'v1' }, ['v2'], { v2: refused });
    await expect(r.fetch()).rejects.toBe(refused);
    expect(r.tried).toEqual(['v1', 'v2']);
    expect(r.remembered).toEqual([]);
  });

  it.each([
    ['its only version', { cached: 'v1', current: 'v1' }, ['v1']],
    ['its current and previous versions', { cached: 'v2', current: 'v2', previous: 'v1' }, ['v2', 'v1']],
    ['its current and new versions', { cached: 'v1', current: 'v2', previous: 'v1' }, ['v1', 'v2']],
  ])('reports the credentials rejected, having tried %s', async (what, versions, tried) => {
    const r = rotation(versions, []);
    await expect(r.fetch()).rejects.toMatchObject({
      reason: 'upstream_invalid_client',
      message: `the token endpoint rejected the client credentials in secret "s" (HTTP 401); tried ${what}`,
    });
    expect(r.tried).toEqual(tried);
    expect(r.remembered).toEqual([]);
  });

  it('refuses a secret that holds another client_id than the client is configured with, before any request', async () => {
    const requests: string[] = [];
    const other: CredentialSource = { ...secrets, get: async () => new ClientCredentials('s', 'lr_other', 'x', 'v1') };
    const fetcher = new EndpointTokenProvider(
      other,
      { nowMs: () => START_MS },
      {
        timeoutMs: 5_000,
        maxAttempts: 3,
        request: async () => {
          requests.push('sent');
          return grant;
        },
      },
    );
    await expect(
      fetcher.fetch({
        client,
        scopes: ['a'],
        deadlineMs: START_MS + 10_000,
        log: silentLog,
        keyFields: {},
        degraded: () => {},
      }),
    ).rejects.toMatchObject({
      reason: 'secret_client_mismatch',
      message: expect.stringContaining('secret "s" holds another client_id than "limitrail" is configured with'),
    });
    expect(requests).toEqual([]);
  });
});

describe('client secret authentication', () => {
  const clientNamed = (authMethod: string) =>
    loadConfig({
      CALLER_PROOF_AUDIENCE: 'broker',
      TOKEN_TABLE_NAME: 't',
      TOKEN_KMS_KEY_ID: 'k',
      BROKER_CLIENTS: JSON.stringify({
        limitrail: {
          authMethod,
          secretId: 's',
          tokenUrl: 'https://auth.example/connect/token',
          clientId: 'lr_1',
          scopes: ['a'],
        },
      }),
    }).clients.get('limitrail')!;
  const fetchWith = async (source: CredentialSource, authMethod = 'client_secret_post') => {
    const sent: { credentials: string; authorization?: string; form: URLSearchParams }[] = [];
    const reported: unknown[][] = [];
    const fetcher = new EndpointTokenProvider(
      source,
      { nowMs: () => START_MS },
      {
        timeoutMs: 5_000,
        maxAttempts: 3,
        request: async (_url, auth, ctx) => {
          const form = new URLSearchParams();
          const headers: Record<string, string> = {};
          auth.applyTo(form, headers);
          sent.push({ credentials: ctx.credentials, authorization: headers.authorization, form });
          return grant;
        },
      },
    );
    await fetcher.fetch({
      client: clientNamed(authMethod),
      scopes: ['a'],
      deadlineMs: START_MS + 10_000,
      log: silentLog,
      keyFields: {},
      degraded: (...args: unknown[]) => void reported.push(args),
    });
    return { sent, reported };
  };

  it('names the secret, and client_secret_basic, in what an invalid_client answer would say was rejected', async () => {
    const post = await fetchWith(secrets, 'client_secret_post');
    expect(post.sent).toMatchObject([
      { credentials: 'the client credentials in secret "s"', authorization: undefined },
    ]);
    expect(post.sent[0]!.form.get('client_secret')).toBe('secret');
    const basic = await fetchWith(secrets, 'client_secret_basic');
    expect(basic.sent).toMatchObject([
      { credentials: 'the client credentials (client_secret_basic) in secret "s"', authorization: expect.any(String) },
    ]);
    expect(basic.sent[0]!.form.get('client_secret')).toBeNull();
  });

  it('reports a secret answered from the container cache while Secrets Manager is down as degraded secret_fallback', async () => {
    const down = new UnavailableError('Secrets Manager is unavailable reading secret "s": X', 'secrets_unavailable');
    const fallingBack: CredentialSource = {
      ...secrets,
      get: async (_id, options) => {
        options?.onFallback?.(down);
        return new ClientCredentials('s', 'lr_1', 'secret', 'v1');
      },
    };
    const { reported } = await fetchWith(fallingBack);
    expect(reported).toEqual([['secret_fallback', 'secrets_unavailable', { detail: down.message }]]);
  });
});
