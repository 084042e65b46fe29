import { type CachedToken, lifetimeOf } from '../../../functions/lib/domain/cached-token';

/** A fake clock: tests move time, they do not stub decisions. */
export const clockAt = (iso: string) => {
  let nowMs = Date.parse(iso);
  return { nowMs: () => nowMs, advanceSec: (s: number) => (nowMs += s * 1000) };
};

/** A token issued at `nowMs` for `lifetimeSec`, as the token endpoint's answer would make it. */
export const tokenIssuedAt = (nowMs: number, lifetimeSec = 3600): CachedToken => ({
  accessToken: 'tok',
  scopes: ['a'],
  ...lifetimeOf(nowMs, lifetimeSec),
});
