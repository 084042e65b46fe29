import { describe, expect, it } from 'vitest';
import {
  claimedIdentityLabel,
  MAX_CLAIMED_ARN_CHARS,
  readUrlEvent,
  toUrlResponse,
  type UrlEventShape,
} from '../../../functions/lib/handlers/function-url';
import { roleSession, urlEvent } from '../../support/fakes/url-event';

describe('the Function URL answer', () => {
  it('says when to retry a limited forced refresh in a Retry-After header, as the body does', () => {
    const answer = toUrlResponse({
      error: 'temporarily_unavailable',
      error_description: 'x',
      status: 503,
      retryAfterSeconds: 13,
    });
    expect(answer).toMatchObject({ statusCode: 503, headers: { 'retry-after': '13', 'cache-control': 'no-store' } });
    const without = toUrlResponse({ error: 'temporarily_unavailable', error_description: 'x', status: 503 }) as {
      headers: Record<string, string>;
    };
    expect(without.headers).not.toHaveProperty('retry-after');
  });
});

describe('an identity a URL-shaped event claims', () => {
  const withIam = (iam: Record<string, unknown>) =>
    urlEvent({ scopes: ['a'] }, { iam: iam as never }) as unknown as UrlEventShape;

  it('is logged as itself only when it is an ARN of bounded length, else as invalid with its length', () => {
    expect(claimedIdentityLabel('arn:aws:sts::123456789012:assumed-role/billing/i-0abc')).toBe(
      'arn:aws:sts::123456789012:assumed-role/billing/i-0abc',
    );
    expect(claimedIdentityLabel(`arn:aws:iam::123456789012:user/${'u'.repeat(200_000)}`)).toBe(
      'invalid (200031 characters)',
    );
    expect(claimedIdentityLabel('arn:aws:iam::123456789012:user/a b')).toBe('invalid (34 characters)');
    expect(claimedIdentityLabel('arn:aws:s3:::bucket')).toBe('invalid (19 characters)');
    expect(claimedIdentityLabel(42)).toBe('invalid (number)');
    expect(claimedIdentityLabel(null)).toBe('invalid (null)');
  });

  it('is no verified caller unless its ARN, account and organization id have the shapes AWS gives them', () => {
    const session = roleSession('billing', '123456789012');
    expect(readUrlEvent(withIam({ ...session })).caller).toMatchObject({ arn: session.userArn });
    expect(readUrlEvent(withIam({ ...session, principalOrgId: 'o-a1b2c3d4e5' })).caller).toMatchObject({
      principalOrgId: 'o-a1b2c3d4e5',
    });
    for (const bad of [
      { ...session, userArn: `${session.userArn}${'x'.repeat(200_000)}` },
      { ...session, userArn: 'billing' },
      { ...session, principalOrgId: `o-${'a'.repeat(200_000)}` },
      { ...session, principalOrgId: 7 },
      { ...session, accountId: '12345' },
    ]) {
      const read = readUrlEvent(withIam(bad));
      expect(read.caller).toBeUndefined();
      expect(read.refusal).toMatchObject({ status: 403, reason: 'caller_unverified' });
      expect((read.claimed ?? '').length).toBeLessThanOrEqual(MAX_CLAIMED_ARN_CHARS);
    }
    expect(readUrlEvent(withIam({ ...session, userArn: 'x'.repeat(200_000) })).claimed).toBe(
      'invalid (200000 characters)',
    );
  });
});

describe('the Function URL answer headers', () => {
  /** toUrlResponse always answers the structured form (LambdaFunctionURLResult also allows a bare string). */
  const answerTo = (body: Parameters<typeof toUrlResponse>[0]) =>
    toUrlResponse(body) as { statusCode: number; headers: Record<string, string>; body: string };
  const headersOf = (body: Parameters<typeof toUrlResponse>[0]) => answerTo(body).headers;

  it('is JSON that nothing in between caches, with the error status as the HTTP status', () => {
    const refused = answerTo({ error: 'invalid_request', error_description: 'x', status: 400 });
    expect(refused.statusCode).toBe(400);
    expect(refused.headers).toEqual({
      'content-type': 'application/json',
      'cache-control': 'no-store',
      pragma: 'no-cache',
    });
    expect(JSON.parse(refused.body)).toEqual({ error: 'invalid_request', error_description: 'x', status: 400 });
  });

  it('says Allow: POST on a 405, and on no other answer', () => {
    expect(
      headersOf({ error: 'invalid_request', error_description: 'only POST is allowed', status: 405 }),
    ).toMatchObject({ allow: 'POST' });
    expect(headersOf({ error: 'invalid_request', error_description: 'x', status: 400 })).not.toHaveProperty('allow');
    expect(
      headersOf({
        access_token: 't',
        token_type: 'Bearer',
        expires_in: 3600,
        expires_at: '2026-11-29T07:00:00Z',
        scope: 'a',
        client: 'limitrail',
      } as never),
    ).not.toHaveProperty('allow');
  });
});

describe('the identity a URL-shaped event claims, at its bounds', () => {
  const withIam = (iam: Record<string, unknown>) =>
    urlEvent({ scopes: ['a'] }, { iam: iam as never }) as unknown as UrlEventShape;
  const session = roleSession('billing', '123456789012');
  /** An IAM user ARN of exactly `chars` characters (the ARN pattern itself allows a little more than the cap). */
  const userArnOf = (chars: number) => {
    const prefix = 'arn:aws:iam::123456789012:user/';
    return `${prefix}${'u'.repeat(chars - prefix.length)}`;
  };

  it('is a caller with an ARN of exactly 1024 characters, and logged only by its length at 1025', () => {
    const atCap = userArnOf(MAX_CLAIMED_ARN_CHARS);
    expect(claimedIdentityLabel(atCap)).toBe(atCap);
    expect(readUrlEvent(withIam({ ...session, userArn: atCap }))).toMatchObject({
      caller: { arn: atCap },
      claimed: atCap,
    });
    const over = userArnOf(MAX_CLAIMED_ARN_CHARS + 1);
    expect(claimedIdentityLabel(over)).toBe('invalid (1025 characters)');
    const read = readUrlEvent(withIam({ ...session, userArn: over }));
    expect(read.caller).toBeUndefined();
    expect(read.claimed).toBe('invalid (1025 characters)');
    expect(read.refusal).toMatchObject({ status: 403, reason: 'caller_unverified' });
  });

  it('takes an empty principalOrgId, as for a principal outside an organization, as none', () => {
    const read = readUrlEvent(withIam({ ...session, principalOrgId: '' }));
    expect(read.refusal).toBeUndefined();
    expect(read.caller).toEqual({ arn: session.userArn, accountId: '123456789012', principalOrgId: undefined });
  });

  it.each([
    ['13 digits', '1234567890123'],
    ['12 digits after a letter', 'x123456789012'],
    ['12 digits before a letter', '123456789012x'],
  ])('is no verified caller with an account id of %s', (_name, accountId) => {
    const read = readUrlEvent(withIam({ ...session, accountId }));
    expect(read.caller).toBeUndefined();
    expect(read.refusal).toMatchObject({ error: 'access_denied', status: 403, reason: 'caller_unverified' });
  });
});
