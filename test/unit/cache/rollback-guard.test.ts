import { describe, expect, it } from 'vitest';
import { MAX_GUARDED_KEYS, MAX_REJECTED_PER_KEY, RollbackGuard } from '../../../functions/lib/cache/rollback-guard';
import { type CachedToken, lifetimeOf } from '../../../functions/lib/domain/cached-token';
import { sha256Hex } from '../../../functions/lib/shared/hash';
import { observed } from '../../support/fakes/observed';

/** What a container may serve from the table after what it served (rollback-guard.ts), pure. */
const NOW = Date.parse('2026-11-29T06:00:00Z');
const issued = (name: string, atMs: number, lifetimeSec = 3600): CachedToken => ({
  accessToken: name,
  scopes: ['a'],
  ...lifetimeOf(atMs, lifetimeSec),
});
const older = issued('older', NOW - 600_000);
const newer = issued('newer', NOW);

describe('the rollback guard', () => {
  it('lets every token through for a key this container never served', () => {
    expect(new RollbackGuard().verdict('k', older)).toBeUndefined();
  });

  it('refuses a table token issued and expiring before one it served for the key; not for another key', () => {
    const guard = new RollbackGuard();
    guard.served('k', newer);
    expect(guard.verdict('k', older)).toBe('older_than_served');
    expect(guard.verdict('k', newer)).toBeUndefined();
    expect(guard.verdict('k', issued('later', NOW + 60_000))).toBeUndefined();
    expect(guard.verdict('other', older)).toBeUndefined();
  });

  it('lets through a token issued earlier that lives longer (the table keeps the longer-lived: not a rollback)', () => {
    const guard = new RollbackGuard();
    guard.served('k', issued('short-lived', NOW, 600));
    expect(guard.verdict('k', issued('long-lived', NOW - 60_000, 3600))).toBeUndefined();
  });

  it('calls older only a token issued strictly before AND expiring strictly before the newest served', () => {
    const guard = new RollbackGuard();
    guard.served('k', newer);
    // Issued in the same second (a re-issued copy keeps its issue time), expiring a second sooner: not older.
    expect(
      guard.verdict('k', { ...newer, accessToken: 'same-issue', expiresAtEpochSec: newer.expiresAtEpochSec - 1 }),
    ).toBeUndefined();
    // Issued later, living shorter (the endpoint shortened its tokens): not older.
    expect(guard.verdict('k', issued('later-shorter', NOW + 60_000, 600))).toBeUndefined();
    // Issued earlier, expiring in the same second: not older.
    expect(guard.verdict('k', { ...older, expiresAtEpochSec: newer.expiresAtEpochSec })).toBeUndefined();
  });

  it('keeps a rejected fingerprint however often another one is reported again', () => {
    const guard = new RollbackGuard();
    guard.replaced('k', sha256Hex(older.accessToken), newer);
    for (let i = 0; i < 2 * MAX_REJECTED_PER_KEY; i++) guard.replaced('k', sha256Hex('reported-again'), newer);
    expect(guard.verdict('k', older)).toBe('reported_rejected');
  });

  it('refuses a suspect table token on every read of a request, logging and counting it once (rollback_suspected)', () => {
    const guard = new RollbackGuard();
    guard.served('k', newer);
    const { warnings, counts, log, metrics } = observed();
    const vet = guard.vetter('k', { log, keyFields: { client: 'limitrail' }, metrics });
    const replayed = { ...older, accessToken: 'eyJ-a-replayed-access-token' };
    expect([vet(replayed), vet(replayed), vet(newer)]).toEqual([false, false, true]);
    expect(counts.get('RollbackSuspected')).toBe(1);
    expect(warnings).toEqual([
      expect.objectContaining({ client: 'limitrail', reason: 'rollback_suspected', verdict: 'older_than_served' }),
    ]);
    expect(JSON.stringify(warnings)).not.toContain(replayed.accessToken);
  });

  it('refuses a token reported rejected once it was replaced, but not when the answer was that very token', () => {
    const guard = new RollbackGuard();
    guard.replaced('k', sha256Hex(older.accessToken), older); // re-issued: the endpoint answered the same token
    expect(guard.verdict('k', older)).toBeUndefined();
    guard.replaced('k', sha256Hex(older.accessToken), newer);
    expect(guard.verdict('k', older)).toBe('reported_rejected');
    // Even with a later issue time (an endpoint re-issuing it), a token reported rejected and replaced stays refused.
    expect(guard.verdict('k', { ...older, issuedAtEpochSec: newer.issuedAtEpochSec + 10 })).toBe('reported_rejected');
  });

  it('bounds its memory: MAX_REJECTED_PER_KEY fingerprints per key, MAX_GUARDED_KEYS keys, oldest dropped first', () => {
    const guard = new RollbackGuard();
    for (let i = 0; i <= MAX_REJECTED_PER_KEY; i++) guard.replaced('k', sha256Hex(`t${i}`), newer);
    expect(guard.verdict('k', { ...newer, accessToken: 't0' })).toBeUndefined();
    expect(guard.verdict('k', { ...newer, accessToken: 't1' })).toBe('reported_rejected');
    guard.served('first', newer);
    for (let i = 0; i < MAX_GUARDED_KEYS; i++) guard.served(`key-${i}`, newer);
    expect(guard.verdict('first', older)).toBeUndefined();
    expect(guard.verdict('key-0', older)).toBe('older_than_served'); // exactly MAX_GUARDED_KEYS are kept
    expect(guard.verdict(`key-${MAX_GUARDED_KEYS - 1}`, older)).toBe('older_than_served');
  });
});
