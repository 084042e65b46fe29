import { createServer, type IncomingHttpHeaders } from 'node:http';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  StsIdentityVerifier,
  type StsTransport,
  sendToSts,
} from '../../../functions/lib/callers/sts-identity-verifier';
import type { CheckedProof } from '../../../functions/lib/domain/proof';
import { listenOnLoopback } from '../../support/process/listen';

const NOW = Date.parse('2026-11-29T08:00:00Z');

describe('the verifier (fake STS, fake clock)', () => {
  const identity =
    '<GetCallerIdentityResult><Account>111111111111</Account><Arn>arn:aws:iam::111111111111:user/ci</Arn></GetCallerIdentityResult>';
  const checked = (key: string, validUntilMs = NOW + 300_000): CheckedProof => ({
    url: 'https://sts.amazonaws.com/',
    headers: {},
    body: '',
    key,
    validUntilMs,
  });
  const setup = (answer: () => Promise<{ status: number; bodyText: string }>) => {
    const clock = { now: NOW, nowMs: () => clock.now };
    let calls = 0;
    const transport: StsTransport = async () => {
      calls += 1;
      return answer();
    };
    return { clock, verifier: new StsIdentityVerifier(clock, transport), calls: () => calls };
  };

  it('shares one STS call among concurrent requests with one proof, then answers from memory until the proof expires', async () => {
    const { clock, verifier, calls } = setup(async () => ({ status: 200, bodyText: identity }));
    const results = await Promise.all(Array.from({ length: 5 }, () => verifier.verify(checked('a'), NOW + 10_000)));
    expect(calls()).toBe(1);
    expect(results.map((r) => r.source).sort()).toEqual(['cached', 'cached', 'cached', 'cached', 'verified']);
    expect((await verifier.verify(checked('a'), NOW + 10_000)).source).toBe('cached');
    clock.now = NOW + 300_000;
    expect((await verifier.verify(checked('a'), clock.now + 10_000)).source).toBe('verified');
    expect(calls()).toBe(2);
  });

  it('does not keep failures: the next request asks STS again', async () => {
    let fail = true;
    const { verifier, calls } = setup(async () =>
      fail ? { status: 500, bodyText: '' } : { status: 200, bodyText: identity },
    );
    await expect(verifier.verify(checked('b'), NOW + 10_000)).rejects.toMatchObject({ reason: 'sts_unavailable' });
    fail = false;
    await expect(verifier.verify(checked('b'), NOW + 10_000)).resolves.toMatchObject({ source: 'verified' });
    expect(calls()).toBe(2);
  });

  it('lets a request that joins a verification in flight wait only until its own deadline', async () => {
    let release: (answer: { status: number; bodyText: string }) => void = () => undefined;
    const { verifier, calls } = setup(() => new Promise((done) => (release = done)));
    const first = verifier.verify(checked('d'), NOW + 60_000);
    const joined = verifier.verify(checked('d'), NOW + 20); // the fake clock stands still: 20 ms of real time
    await expect(joined).rejects.toMatchObject({
      status: 503,
      reason: 'sts_unavailable',
      message: "STS did not verify the identity proof within this invocation's time",
    });
    release({ status: 200, bodyText: identity });
    await expect(first).resolves.toMatchObject({ source: 'verified' });
    expect(calls()).toBe(1);
  });

  it('does not call STS when the invocation has no time left', async () => {
    const { verifier, calls } = setup(async () => ({ status: 200, bodyText: identity }));
    await expect(verifier.verify(checked('c'), NOW)).rejects.toMatchObject({
      status: 503,
      reason: 'sts_unavailable',
      message: 'no time left to verify the identity proof with STS',
    });
    expect(calls()).toBe(0);
  });

  it('lets a request that joins a verification in flight with time left get its answer, however long STS takes', async () => {
    let release: (answer: { status: number; bodyText: string }) => void = () => undefined;
    const { verifier, calls } = setup(() => new Promise((done) => (release = done)));
    const first = verifier.verify(checked('e'), NOW + 60_000);
    const joined = verifier.verify(checked('e'), NOW + 60_000);
    await new Promise((done) => setTimeout(done, 20)); // STS answers after some real time (60 s left on the fake clock)
    release({ status: 200, bodyText: identity });
    const caller = { arn: 'arn:aws:iam::111111111111:user/ci', accountId: '111111111111' };
    await expect(joined).resolves.toMatchObject({ source: 'cached', identity: caller });
    await expect(first).resolves.toMatchObject({ source: 'verified', identity: caller });
    expect(calls()).toBe(1);
  });
});

/** The real transport against a scripted HTTP server on loopback (STS itself, with moto: test/integration/identity.test.ts). */
describe('sending a proof to STS (sendToSts)', () => {
  const BODY = 'Action=GetCallerIdentity&Version=2011-06-15';
  const seen: { method?: string; url?: string; headers: IncomingHttpHeaders; body: string }[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() });
      const path = req.url ?? '/';
      if (path === '/hang') return;
      if (path === '/trickle') {
        res.writeHead(200);
        const drip = setInterval(() => res.write('x'), 20);
        res.on('close', () => clearInterval(drip));
        return;
      }
      if (path === '/cut') {
        res.writeHead(200, { 'content-length': '100' });
        res.write('<GetCallerIdentityResponse>');
        setTimeout(() => res.socket?.destroy(), 20);
        return;
      }
      if (path === '/not-http') {
        res.socket?.end('HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n');
        return;
      }
      const size = /^\/bytes\/(\d+)$/.exec(path);
      if (size) {
        res.end('x'.repeat(Number(size[1])));
        return;
      }
      res.writeHead(403, { 'content-type': 'text/xml' }).end('<Error><Code>SignatureDoesNotMatch</Code></Error>');
    });
  });
  let sts: Awaited<ReturnType<typeof listenOnLoopback>>;
  beforeAll(async () => {
    sts = await listenOnLoopback(server);
  });
  afterAll(async () => {
    await sts.close();
  });
  const proof = (url: string, headers: Record<string, string> = {}): CheckedProof => ({
    url,
    headers,
    body: BODY,
    key: 'k',
    validUntilMs: NOW,
  });

  it("POSTs the proof's body with its headers, the URL's host and the body's length, and reads STS's answer", async () => {
    seen.length = 0;
    const signed = {
      'x-amz-date': '20261129T080000Z',
      authorization: 'AWS4-HMAC-SHA256 Credential=AKIA/20261129/us-east-1/sts/aws4_request',
      host: 'evil',
    };
    await expect(sendToSts(proof(`${sts.url}/`, signed), 2_000)).resolves.toEqual({
      status: 403,
      bodyText: '<Error><Code>SignatureDoesNotMatch</Code></Error>',
    });
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({
      method: 'POST',
      url: '/',
      body: BODY,
      headers: {
        ...signed,
        host: new URL(sts.url).host,
        'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
        accept: 'text/xml',
        'content-length': String(BODY.length),
      },
    });
    // What the caller signed is sent as signed.
    await sendToSts(
      proof(`${sts.url}/`, { 'content-type': 'application/x-amz-json', accept: 'application/json' }),
      2_000,
    );
    expect(seen[1]!.headers).toMatchObject({ 'content-type': 'application/x-amz-json', accept: 'application/json' });
  });

  it('leaves no timer behind once STS has answered', async () => {
    // The time cap's own timer (the one armed with the 2 s given) is cleared once the exchange is over. Counted by
    // what was armed and cleared, not by the process's active timers, which other tests' sockets share.
    const armed = vi.spyOn(globalThis, 'setTimeout');
    const cleared = vi.spyOn(globalThis, 'clearTimeout');
    try {
      await sendToSts(proof(`${sts.url}/`), 2_123);
      await new Promise((done) => setImmediate(done));
      const caps = armed.mock.calls.flatMap((call, i) => (call[1] === 2_123 ? [armed.mock.results[i]!.value] : []));
      expect(caps).toHaveLength(1);
      expect(cleared.mock.calls.map(([timer]) => timer)).toContain(caps[0]);
    } finally {
      armed.mockRestore();
      cleared.mockRestore();
    }
  });

  it('reads an answer of 16 KiB, and refuses one byte more', async () => {
    await expect(sendToSts(proof(`${sts.url}/bytes/16384`), 2_000)).resolves.toEqual({
      status: 200,
      bodyText: 'x'.repeat(16 * 1024),
    });
    await expect(sendToSts(proof(`${sts.url}/bytes/16385`), 2_000)).rejects.toMatchObject({
      status: 503,
      reason: 'sts_unavailable',
      message: 'STS answered more than 16 KiB',
    });
  });

  it('gives up on STS at the time given, also when it keeps sending', async () => {
    for (const path of ['/hang', '/trickle']) {
      const guard = new Promise((_, fail) => setTimeout(() => fail(new Error(`${path} still pending`)), 2_000));
      await expect(Promise.race([sendToSts(proof(`${sts.url}${path}`), 100), guard])).rejects.toMatchObject({
        status: 503,
        reason: 'sts_unavailable',
        message: 'STS did not answer within 100 ms',
      });
    }
  });

  it('answers 503 when STS cannot be reached, closes the connection mid-answer or does not speak HTTP', async () => {
    const closed = await listenOnLoopback(createServer());
    const closedUrl = `${closed.url}/`;
    await closed.close();
    await expect(sendToSts(proof(closedUrl), 2_000)).rejects.toMatchObject({
      status: 503,
      reason: 'sts_unavailable',
      message: 'STS could not be reached (ECONNREFUSED)',
    });
    await expect(sendToSts(proof(`${sts.url}/cut`), 2_000)).rejects.toMatchObject({
      reason: 'sts_unavailable',
      message: 'STS closed the connection mid-answer',
    });
    // The parser's code (HPE_INVALID_HEADER_TOKEN) is not a network error code: not named.
    await expect(sendToSts(proof(`${sts.url}/not-http`), 2_000)).rejects.toMatchObject({
      reason: 'sts_unavailable',
      message: 'STS could not be reached',
    });
  });

  it('speaks TLS to an https STS URL: a plain HTTP server there receives no request', async () => {
    seen.length = 0;
    const { port } = new URL(sts.url);
    await expect(sendToSts(proof(`https://127.0.0.1:${port}/`), 2_000)).rejects.toMatchObject({
      status: 503,
      reason: 'sts_unavailable',
      message: expect.stringMatching(/^STS could not be reached/),
    });
    expect(seen).toEqual([]);
  });
});
