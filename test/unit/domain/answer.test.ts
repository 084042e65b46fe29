import { describe, expect, it } from 'vitest';
import { toTokenAnswer } from '../../../functions/lib/domain/answer';
import type { CachedToken } from '../../../functions/lib/domain/cached-token';

describe('the token answer', () => {
  it('gives the granted scopes space-separated, the remaining lifetime and the expiry in whole seconds', () => {
    const token: CachedToken = {
      accessToken: 'at-1',
      scopes: ['orders.read', 'orders.write'],
      issuedAtEpochSec: 1_800_000_000,
      expiresAtEpochSec: 1_800_003_600,
      refreshAtEpochSec: 1_800_002_700,
    };
    expect(toTokenAnswer(token, 'limitrail', 1_800_000_000_500)).toEqual({
      access_token: 'at-1',
      token_type: 'Bearer',
      expires_in: 3599,
      expires_at: '2027-01-15T09:00:00Z',
      scope: 'orders.read orders.write',
      client: 'limitrail',
    });
    expect(toTokenAnswer(token, 'limitrail', 1_800_003_700_000).expires_in).toBe(0);
  });
});
