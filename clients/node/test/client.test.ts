import { createHash } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { inspect } from 'node:util';
import {
  authorizedFetch,
  invokeTransport,
  stsUrlFor,
  TokenBrokerClient,
  TokenBrokerError,
  type TokenRequest,
  urlTransport,
} from '@limitrail/token-broker-client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BACKOFF_CAP_MS, backoffDelayMs, cacheKeyOf, minTtlSecondsFor, refreshAtMs } from '../src/policy';

/**
 * The Node caller package's decisions and its client over a fake transport (what the broker answers is scripted;
 * the real broker is in clients/node/test/stack.test.ts). The clocks are moved with fake timers, never stubbed.
 */
const answer = (token: string, expiresIn = 3600, extra: Record<string, unknown> = {}) => ({
  access_token: token,
  token_type: 'Bearer',
  expires_in: expiresIn,
  expires_at: new Date(Date.now() + expiresIn * 1000).toISOString(),
  scope: 'a b',
  client: 'limitrail',
  ...extra,
});
const unavailable = (extra: Record<string, unknown> = {}) => ({
  error: 'temporarily_unavailable',
  error_description: 'the token endpoint failed',
  status: 503,
  ...extra,
});

/** A transport that answers from a script and records what it was asked. */
const scripted = (...answers: Array<unknown | (() => unknown)>) => {
  const requests: TokenRequest[] = [];
  const transport = async (request: TokenRequest) => {
    requests.push(request);
    await new Promise((r) => setTimeout(r, 5));
    const next = answers.length > 1 ? answers.shift() : answers[0];
    return typeof next === 'function' ? (next as () => unknown)() : next;
  };
  return { transport, requests };
};

afterEach(() => {
  vi.useRealTimers();
});

describe('policy', () => {
  it('keys a request by client and its deduplicated, sorted scopes', () => {
    expect(cacheKeyOf(undefined, ['b', 'a', 'a'])).toBe(cacheKeyOf(undefined, ['a', 'b']));
    expect(cacheKeyOf('other', ['a', 'b'])).not.toBe(cacheKeyOf(undefined, ['a', 'b']));
    expect(cacheKeyOf(undefined, ['a b'])).not.toBe(cacheKeyOf(undefined, ['a', 'b']));
    expect(() => cacheKeyOf(undefined, [])).toThrow('"scopes" must be a non-empty array');
    expect(() => cacheKeyOf(undefined, ['a', ''])).toThrow('"scopes[1]" must be a non-empty string');
  });

  it('reuses a token until the margin before it expires, counted from when it was asked for', () => {
    expect(refreshAtMs(1_000_000, 3600, 60)).toBe(1_000_000 + 3_540_000);
    expect(refreshAtMs(1_000_000, 30, 60)).toBeLessThan(1_000_000);
    expect(minTtlSecondsFor(60)).toBe(60);
    expect(minTtlSecondsFor(5_000)).toBe(900);
  });

  it('backs off with full jitter, doubling and capped, never less than the broker asked', () => {
    expect(backoffDelayMs(1, 0)).toBe(0);
    expect(backoffDelayMs(1, 0.999)).toBe(199);
    expect(backoffDelayMs(3, 0.999)).toBe(799);
    expect(backoffDelayMs(30, 0.999)).toBe(BACKOFF_CAP_MS - 2);
    expect(backoffDelayMs(1, 0.5, 2)).toBe(2_000);
  });

  it("sends proofs to AWS_ENDPOINT_URL_STS when set, else to the region's STS endpoint", () => {
    expect(stsUrlFor('eu-central-1', {})).toBe('https://sts.eu-central-1.amazonaws.com/');
    expect(stsUrlFor('cn-north-1', {})).toBe('https://sts.cn-north-1.amazonaws.com.cn/');
    expect(stsUrlFor('eu-central-1', { AWS_ENDPOINT_URL_STS: 'http://127.0.0.1:4566' })).toBe('http://127.0.0.1:4566/');
    expect(() => stsUrlFor('', {})).toThrow('"region"');
  });
});

describe('TokenBrokerClient', () => {
  // Both clocks faked: vi.advanceTimersByTime moves the wall clock (Date) and the monotonic one (performance.now)
  // together, as time passing does; vi.setSystemTime moves the wall clock alone, as a clock step does.
  const fakeClocks = () => {
    vi.useFakeTimers({ toFake: ['Date', 'performance'] });
    vi.setSystemTime(new Date('2026-11-29T06:00:00Z'));
  };

  it('asks with canonical scopes and minTtlSeconds = margin, and reuses the token until the margin', async () => {
    fakeClocks();
    const { transport, requests } = scripted(answer('t1'), answer('t2'));
    const broker = new TokenBrokerClient(transport, { marginSec: 60 });
    expect(await broker.token(['b', 'a', 'b'])).toBe('t1');
    expect(requests[0]).toEqual({ scopes: ['a', 'b'], minTtlSeconds: 60 });
    vi.advanceTimersByTime(3_539_000);
    expect(await broker.token(['a', 'b'])).toBe('t1');
    vi.advanceTimersByTime(1_100);
    expect(await broker.token(['a', 'b'])).toBe('t2');
    expect(requests).toHaveLength(2);
  });

  it('does not reuse an expired token after the wall clock steps back (expiry runs on the monotonic clock)', async () => {
    fakeClocks();
    const { transport, requests } = scripted(answer('t1', 120), answer('t2', 120));
    const broker = new TokenBrokerClient(transport, { marginSec: 60 });
    expect(await broker.token(['a'])).toBe('t1');
    vi.advanceTimersByTime(61_000);
    // An NTP correction or a manual change sets the wall clock an hour back: t1 is past its margin all the same.
    vi.setSystemTime(new Date('2026-11-29T05:01:01Z'));
    expect(await broker.token(['a'])).toBe('t2');
    expect(requests).toHaveLength(2);
    // The new token is kept for its own lifetime from now, whatever the wall clock reads.
    vi.advanceTimersByTime(30_000);
    expect(await broker.token(['a'])).toBe('t2');
    expect(requests).toHaveLength(2);
  });

  it('does not reuse a token once the wall clock says it is past its margin (a suspended process)', async () => {
    fakeClocks();
    const { transport, requests } = scripted(answer('t1', 120), answer('t2', 120));
    const broker = new TokenBrokerClient(transport, { marginSec: 60 });
    expect(await broker.token(['a'])).toBe('t1');
    // Suspended for an hour: the monotonic clock stood still, the wall clock did not.
    vi.setSystemTime(new Date('2026-11-29T07:00:00Z'));
    expect(await broker.token(['a'])).toBe('t2');
    expect(requests).toHaveLength(2);
  });

  it('keeps tokens per client name', async () => {
    const { transport, requests } = scripted(answer('t1'), answer('t2'));
    const broker = new TokenBrokerClient(transport);
    expect(await broker.token(['a'])).toBe('t1');
    expect(await broker.token(['a'], { client: 'other' })).toBe('t2');
    expect(requests[1]).toMatchObject({ client: 'other' });
  });

  it('uses a stale answer (less life than the margin) once without keeping it', async () => {
    const { transport, requests } = scripted(answer('old', 40, { stale: true }), answer('new'));
    const broker = new TokenBrokerClient(transport);
    expect(await broker.token(['a'])).toBe('old');
    expect(await broker.token(['a'])).toBe('new');
    expect(requests).toHaveLength(2);
  });

  it('shares one broker call among concurrent requests, and its failure too, which is not kept', async () => {
    const { transport, requests } = scripted(
      { error: 'invalid_scope', error_description: 'scope "x" is not allowed', status: 400 },
      answer('t1'),
    );
    const broker = new TokenBrokerClient(transport);
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => broker.token(['x'])));
    expect(requests).toHaveLength(1);
    for (const r of results)
      expect(r).toMatchObject({ status: 'rejected', reason: { error: 'invalid_scope', status: 400 } });
    expect(await broker.token(['x'])).toBe('t1');
    expect(requests).toHaveLength(2);
  });

  it('raises every error but temporarily_unavailable at once, with error, status and description', async () => {
    const { transport, requests } = scripted({
      error: 'access_denied',
      error_description: 'no grant covers it',
      status: 403,
    });
    const err = await new TokenBrokerClient(transport).token(['a']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TokenBrokerError);
    expect(err).toMatchObject({
      error: 'access_denied',
      status: 403,
      description: 'no grant covers it',
      message: 'access_denied: no grant covers it',
    });
    expect(requests).toHaveLength(1);
  });

  it('retries temporarily_unavailable until the broker answers', async () => {
    const { transport, requests } = scripted(unavailable(), unavailable(), answer('t1'));
    expect(await new TokenBrokerClient(transport).token(['a'])).toBe('t1');
    expect(requests).toHaveLength(3);
  });

  it('gives up when the next retry would not fit before the deadline', async () => {
    const { transport, requests } = scripted(unavailable());
    const startedMs = Date.now();
    const err = await new TokenBrokerClient(transport, { deadlineMs: 600 }).token(['a']).catch((e: unknown) => e);
    expect(err).toMatchObject({ error: 'temporarily_unavailable', status: 503 });
    expect(Date.now() - startedMs).toBeLessThan(2_000); // stopped near the deadline, not after more waits
    expect(requests.length).toBeGreaterThanOrEqual(2);
  });

  it("waits at least the broker's retryAfterSeconds, and raises at once when that is past the deadline", async () => {
    const waited = scripted(unavailable({ retryAfterSeconds: 1 }), answer('t1'));
    const startedMs = Date.now();
    expect(await new TokenBrokerClient(waited.transport).token(['a'])).toBe('t1');
    expect(Date.now() - startedMs).toBeGreaterThanOrEqual(1_000);

    const refused = scripted(unavailable({ retryAfterSeconds: 30 }));
    const err = await new TokenBrokerClient(refused.transport).token(['a']).catch((e: unknown) => e);
    expect(err).toMatchObject({ error: 'temporarily_unavailable', retryAfterSeconds: 30 });
    expect(refused.requests).toHaveLength(1);
  });

  it('after a 401 drops the token and asks with forceRefresh and its SHA-256; a token already replaced costs no call', async () => {
    const { transport, requests } = scripted(answer('t1'), answer('t2'));
    const broker = new TokenBrokerClient(transport);
    await broker.token(['a']);
    expect(await broker.tokenAfter401(['a'], 't1')).toBe('t2');
    expect(requests[1]).toEqual({
      scopes: ['a'],
      forceRefresh: true,
      rejectedTokenSha256: createHash('sha256').update('t1').digest('hex'),
    });
    expect(await broker.tokenAfter401(['a'], 't1')).toBe('t2');
    expect(await broker.token(['a'])).toBe('t2');
    expect(requests).toHaveLength(2);
  });

  it('refuses an answer it cannot use, naming the field and never echoing it', async () => {
    const { transport } = scripted({ access_token: 'secret-token-value', token_type: 'Bearer', expires_in: 'soon' });
    const err = (await new TokenBrokerClient(transport).token(['a']).catch((e: unknown) => e)) as TokenBrokerError;
    expect(err).toMatchObject({ error: 'server_error', status: 502 });
    expect(err.message).toContain('"expires_in"');
    expect(`${err.message} ${inspect(err)} ${JSON.stringify(err)}`).not.toContain('secret-token-value');
  });

  it('shows no token when inspected', async () => {
    const { transport } = scripted(answer('secret-token-value'));
    const broker = new TokenBrokerClient(transport);
    await broker.token(['a']);
    expect(`${inspect(broker, { depth: 10, showHidden: true })} ${JSON.stringify(broker)}`).not.toContain(
      'secret-token-value',
    );
  });
});

describe('urlTransport', () => {
  const options = {
    region: 'eu-central-1',
    audience: 'limitrail-token-broker-test-token',
    credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'not-a-secret' },
  };

  it('refuses a plain-http Function URL to any host but loopback, saying why', () => {
    for (const url of [
      'http://abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-central-1.on.aws/',
      'http://10.0.0.7:8080/',
      'http://127.0.0.1.nip.io/',
      'http://localhost.example/',
      'http://[::2]/',
      'ftp://127.0.0.1/',
    ]) {
      expect(() => urlTransport(url, options), url).toThrow(
        /"functionUrl" must be https \(plain http only to a loopback host: 127\.0\.0\.0\/8, ::1, localhost\).*in clear/,
      );
    }
    expect(() => urlTransport('not a url', options)).toThrow('"functionUrl" must be an absolute URL');
  });

  it('accepts https anywhere and plain http to 127.0.0.0/8, ::1 and localhost', () => {
    for (const url of [
      'https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-central-1.on.aws/',
      'http://127.0.0.1:9000/',
      'http://127.45.6.7/',
      'http://[::1]:8080/',
      'http://localhost:3000/',
      'http://LOCALHOST:3000/',
    ]) {
      expect(typeof urlTransport(url, options), url).toBe('function');
    }
  });
});

describe('authorizedFetch', () => {
  const fakeBroker = () => {
    const calls: string[] = [];
    return {
      calls,
      token: async () => {
        calls.push('token');
        return 't1';
      },
      tokenAfter401: async (_scopes: readonly string[], rejected: string) => {
        calls.push(`after401:${rejected}`);
        return 't2';
      },
    };
  };

  it("adds the bearer token, keeps the caller's headers, and does not retry a 403", async () => {
    const broker = fakeBroker();
    const seen: Headers[] = [];
    const fetchFake = async (_input: unknown, init?: RequestInit) => {
      seen.push(new Headers(init?.headers));
      return new Response(null, { status: 403 });
    };
    const res = await authorizedFetch(broker, ['a'], { fetch: fetchFake as typeof fetch })('https://api.example/x', {
      headers: { 'x-trace': '1' },
    });
    expect(res.status).toBe(403);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.get('authorization')).toBe('Bearer t1');
    expect(seen[0]!.get('x-trace')).toBe('1');
    expect(broker.calls).toEqual(['token']);
  });

  it('refuses a stream body, which could not be sent a second time after a 401', async () => {
    const body = new ReadableStream();
    await expect(
      authorizedFetch(fakeBroker(), ['a'])('https://api.example/x', {
        method: 'POST',
        body,
        duplex: 'half',
      } as RequestInit),
    ).rejects.toThrow('a body it can send twice');
  });
});

describe('the deadline bounds an attempt under way', () => {
  // Made-up credentials: the proofs are signed, never sent. The default Lambda client reads its endpoint from
  // AWS_ENDPOINT_URL_LAMBDA and its credentials from the environment, set per test and restored after.
  const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'not-a-secret', sessionToken: 'not-a-token' };
  const region = 'eu-central-1';
  const functionName = 'limitrail-token-broker-test-token';
  const savedEnv = { ...process.env };
  const servers: Array<() => Promise<void>> = [];

  beforeEach(() => {
    for (const key of Object.keys(process.env)) if (key.startsWith('AWS_')) delete process.env[key];
    Object.assign(process.env, {
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      AWS_SESSION_TOKEN: credentials.sessionToken,
      AWS_CONFIG_FILE: '/nonexistent/aws-config',
      AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/aws-credentials',
      AWS_EC2_METADATA_DISABLED: 'true',
    });
  });
  afterEach(async () => {
    for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
    Object.assign(process.env, savedEnv);
    await Promise.all(servers.splice(0).map((close) => close()));
  });

  const listening = async (server: Server | import('node:http').Server, sockets: Set<Socket>): Promise<string> => {
    server.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((ready) => server.listen(0, '127.0.0.1', ready));
    servers.push(
      () =>
        new Promise<void>((done) => {
          for (const socket of sockets) socket.destroy();
          server.close(() => done());
        }),
    );
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  };

  /** A loopback server that takes every connection, reads what comes, and never answers. */
  const silentServer = () => {
    const sockets = new Set<Socket>();
    return listening(
      createTcpServer((socket) => socket.resume()),
      sockets,
    );
  };

  /** The Lambda API answering every call with HTTP 503 (ServiceException); counts the calls. */
  const failingLambdaApi = async () => {
    let calls = 0;
    const server = createHttpServer((req, res) => {
      calls += 1;
      req.resume();
      res.writeHead(503, { 'content-type': 'application/json', 'x-amzn-errortype': 'ServiceException' });
      res.end(JSON.stringify({ Type: 'Service', message: 'down for the test' }));
    });
    const url = await listening(server, new Set());
    return { url, calls: () => calls };
  };

  const failure = (promise: Promise<unknown>) =>
    promise.then(
      () => undefined,
      (err: unknown) => err,
    );

  it('gives up a Lambda API that never answers (the default client) by the deadline, as temporarily_unavailable', async () => {
    process.env.AWS_ENDPOINT_URL_LAMBDA = await silentServer();
    const broker = new TokenBrokerClient(invokeTransport(functionName, { region, credentials }), { deadlineMs: 300 });
    const err = await failure(broker.token(['limitrail.usage.read']));
    expect(err).toBeInstanceOf(TokenBrokerError);
    expect(err).toMatchObject({ error: 'temporarily_unavailable', status: 503 });
  }, 15_000);

  it('gives up a Function URL that never answers by the deadline, as temporarily_unavailable', async () => {
    const url = await silentServer();
    const broker = new TokenBrokerClient(urlTransport(`${url}/`, { region, audience: functionName, credentials }), {
      deadlineMs: 300,
    });
    const err = await failure(broker.token(['limitrail.usage.read']));
    expect(err).toBeInstanceOf(TokenBrokerError);
    expect(err).toMatchObject({ error: 'temporarily_unavailable', status: 503 });
  }, 15_000);

  it('gives up a transport that never settles by the deadline, and aborts the signal it gave it', async () => {
    const signals: Array<AbortSignal | undefined> = [];
    const hanging = (_request: TokenRequest, options?: { signal?: AbortSignal }) => {
      signals.push(options?.signal);
      return new Promise<unknown>(() => undefined);
    };
    const err = await failure(new TokenBrokerClient(hanging, { deadlineMs: 300 }).token(['a']));
    expect(err).toBeInstanceOf(TokenBrokerError);
    expect(err).toMatchObject({ error: 'temporarily_unavailable', status: 503 });
    expect(signals).toHaveLength(1);
    expect(signals[0]?.aborted).toBe(true);
  }, 15_000);

  it('each transport gives up its call when the signal it was given aborts, as temporarily_unavailable', async () => {
    process.env.AWS_ENDPOINT_URL_LAMBDA = await silentServer();
    const url = await silentServer();
    const request = { scopes: ['limitrail.usage.read'] };
    for (const transport of [
      invokeTransport(functionName, { region, credentials }),
      urlTransport(`${url}/`, { region, audience: functionName, credentials }),
    ]) {
      const err = await failure(transport(request, { signal: AbortSignal.timeout(300) }));
      expect(err).toBeInstanceOf(TokenBrokerError);
      expect(err).toMatchObject({ error: 'temporarily_unavailable', status: 503 });
      expect((err as TokenBrokerError).description).toContain('before the deadline');
    }
  }, 15_000);

  it("makes one attempt per call with the default Lambda client: the retries are the TokenBrokerClient's", async () => {
    const api = await failingLambdaApi();
    process.env.AWS_ENDPOINT_URL_LAMBDA = api.url;
    const err = await failure(
      invokeTransport(functionName, { region, credentials })({ scopes: ['limitrail.usage.read'] }),
    );
    expect(err).toMatchObject({ error: 'temporarily_unavailable', status: 503 });
    expect(api.calls()).toBe(1);
  }, 15_000);
});
