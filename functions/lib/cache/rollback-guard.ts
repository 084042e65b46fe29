/**
 * Rollback detection (RollbackGuard). Someone who can write the token table but not use the KMS key cannot forge an
 * item, but can put an earlier authentic item of a key back (kept from a scan, a backup, a point-in-time restore): it
 * still decrypts, since the broker once wrote it for that very key. New containers would serve it, even after callers
 * reported it rejected and a forced refresh replaced it.
 *
 * So each container remembers, per key, the newest token it has served and the tokens callers reported rejected once
 * they were replaced, and a token read from the table that is older than the newest served, or one reported rejected,
 * is never served: the broker treats it as a miss, logs `rollback_suspected` and counts RollbackSuspected, and the
 * token fetched next replaces it. "Older" is issued before AND expiring before: the table itself never moves a key's
 * expiry back (a write never replaces a longer-lived token, conditions.ts noLongerLivedToken), so a token read from
 * it that is both can only be a replay (or, rarely, the table's token after this container's own newer one could not
 * be written: one extra fetch). Memory is bounded: MAX_GUARDED_KEYS keys, least recently used dropped first, and
 * MAX_REJECTED_PER_KEY fingerprints per key, oldest dropped first. A container that never saw the newer token (a new
 * one, or one that dropped the key) cannot tell: docs/security.md says what a table writer can still do.
 */
import { tokenFingerprint } from '../domain/cache-key';
import type { CachedToken } from '../domain/cached-token';
import type { LogReason } from '../shared/errors';
import { sha256Hex } from '../shared/hash';
import type { Log } from '../shared/logger';
import type { MetricsSink } from '../shared/metrics';

export const MAX_GUARDED_KEYS = 2_048;
export const MAX_REJECTED_PER_KEY = 8;

/** Why a table token is not served: older than one this container served, or one a caller reported rejected. */
export type RollbackVerdict = 'older_than_served' | 'reported_rejected';

interface KeyMemory {
  newest?: { issuedAtEpochSec: number; expiresAtEpochSec: number };
  /** Hex SHA-256 of tokens reported rejected and since replaced, oldest first. */
  rejected: string[];
}

export class RollbackGuard {
  /** Per cache key, least recently used first. */
  readonly #keys = new Map<string, KeyMemory>();

  /** A token this container served for the key (from memory, the table or the endpoint): the newest issue and expiry. */
  served(cacheKey: string, token: CachedToken): void {
    const memory = this.#touch(cacheKey);
    memory.newest = {
      issuedAtEpochSec: Math.max(token.issuedAtEpochSec, memory.newest?.issuedAtEpochSec ?? 0),
      expiresAtEpochSec: Math.max(token.expiresAtEpochSec, memory.newest?.expiresAtEpochSec ?? 0),
    };
  }

  /**
   * A caller reported the token with this fingerprint rejected, and was answered with `answer`, read from the table or
   * fetched: the reported token has been replaced. Not recorded when the answer is that very token (an endpoint that
   * re-issues it), and never for an answer from this container's memory (the table may hold something newer).
   */
  replaced(cacheKey: string, rejectedTokenSha256: string, answer: CachedToken): void {
    if (sha256Hex(answer.accessToken) === rejectedTokenSha256) return;
    const { rejected } = this.#touch(cacheKey);
    if (rejected.includes(rejectedTokenSha256)) return;
    rejected.push(rejectedTokenSha256);
    if (rejected.length > MAX_REJECTED_PER_KEY) rejected.shift();
  }

  /** Whether a token read from the table for this key may be served; the verdict when it may not. */
  verdict(cacheKey: string, token: CachedToken): RollbackVerdict | undefined {
    const memory = this.#keys.get(cacheKey);
    if (!memory) return undefined;
    const { newest, rejected } = memory;
    if (
      newest &&
      token.issuedAtEpochSec < newest.issuedAtEpochSec &&
      token.expiresAtEpochSec < newest.expiresAtEpochSec
    )
      return 'older_than_served';
    if (rejected.length > 0 && rejected.includes(sha256Hex(token.accessToken))) return 'reported_rejected';
    return undefined;
  }

  /**
   * A request's vetTableToken (domain/token-request.ts): true for a table token that may be served; for one that may
   * not, logs `rollback_suspected` (the token's fingerprint and times, never the token) and counts RollbackSuspected,
   * once per token for the request, and answers false.
   */
  vetter(
    cacheKey: string,
    scope: { log: Log; keyFields: Record<string, unknown>; metrics?: MetricsSink | undefined },
  ): (token: CachedToken) => boolean {
    const reported = new Set<string>(); // once per token and request, however often the request reads the item
    return (token) => {
      const verdict = this.verdict(cacheKey, token);
      if (verdict === undefined) return true;
      const fingerprint = tokenFingerprint(token.accessToken);
      if (reported.has(fingerprint)) return false;
      reported.add(fingerprint);
      scope.metrics?.count('RollbackSuspected');
      scope.log.warn('rollback suspected: a table token this container must not serve, treated as a miss', {
        ...scope.keyFields,
        reason: 'rollback_suspected' satisfies LogReason,
        verdict,
        tokenFingerprint: fingerprint,
        issuedAtEpochSec: token.issuedAtEpochSec,
        expiresAtEpochSec: token.expiresAtEpochSec,
        newestServed: this.#keys.get(cacheKey)?.newest,
      });
      return false;
    };
  }

  #touch(cacheKey: string): KeyMemory {
    const memory = this.#keys.get(cacheKey) ?? { rejected: [] };
    this.#keys.delete(cacheKey);
    this.#keys.set(cacheKey, memory);
    if (this.#keys.size > MAX_GUARDED_KEYS) this.#keys.delete(this.#keys.keys().next().value as string);
    return memory;
  }
}
