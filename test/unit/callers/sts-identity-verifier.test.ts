import { describe, expect, it } from 'vitest';
import { StsIdentityVerifier, type StsTransport } from '../../../functions/lib/callers/sts-identity-verifier';
import type { CheckedProof } from '../../../functions/lib/domain/proof';

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
    await expect(joined).rejects.toMatchObject({ status: 503, reason: 'sts_unavailable' });
    release({ status: 200, bodyText: identity });
    await expect(first).resolves.toMatchObject({ source: 'verified' });
    expect(calls()).toBe(1);
  });

  it('does not call STS when the invocation has no time left', async () => {
    const { verifier, calls } = setup(async () => ({ status: 200, bodyText: identity }));
    await expect(verifier.verify(checked('c'), NOW)).rejects.toMatchObject({ status: 503 });
    expect(calls()).toBe(0);
  });
});
