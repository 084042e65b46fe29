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
