/**
 * The token item's format (ItemCodec): the fields a token is stored as, the additional authenticated data that binds
 * every one of them and the cache key to the sealed token (itemAad), and reading an item back as untrusted: anything
 * malformed, edited, moved or in the previous format is an unusable entry (a miss), never a crash. The lease and
 * forced-fetch times cannot be bound to the token (they change without a token write); they are read as the
 * conditions read them (lease-rules.ts coordinationTimeMs, conditions.ts).
 */
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import type { CachedToken } from '../../domain/cached-token';
import type { StoredEntry } from '../../ports';
import type { UnusableItemReason } from '../../shared/errors';
import { coordinationTimeMs } from '../lease/lease-rules';
import { TABLE_TTL_ATTRIBUTE } from './table-schema';
import type { SealedToken } from './token-cipher';

/** Items this version writes and reads. Items without it (the previous format) are misses, then replaced. */
export const ITEM_FORMAT = 2;

/** The item fields the broker decides on or answers with, as stored. */
export interface SealedFields {
  client: string;
  /** Granted scopes, space-separated. */
  scope: string;
  issuedAtEpochSec: number;
  expiresAtEpochSec: number;
  refreshAtEpochSec: number;
  reissued: boolean;
}

/**
 * The additional authenticated data of a sealed token: the item format, its cache key and every field the broker
 * decides on or answers with. Moved onto another key, or with any field edited, the token fails to decrypt.
 */
export const itemAad = (cacheKey: string, f: SealedFields): string =>
  JSON.stringify([
    `limitrail-token-broker/item-v${ITEM_FORMAT}`,
    cacheKey,
    f.client,
    f.scope,
    f.issuedAtEpochSec,
    f.expiresAtEpochSec,
    f.refreshAtEpochSec,
    f.reissued,
  ]);

/** Opens a sealed token bound to `aad` (TokenCipher.open for the table), or throws. */
export type OpenSealed = (sealed: SealedToken, aad: string) => Promise<string>;

/** The sealed fields of a token, as written. */
export const sealedFieldsOf = (token: CachedToken, clientName: string): SealedFields => ({
  client: clientName,
  scope: token.scopes.join(' '),
  issuedAtEpochSec: token.issuedAtEpochSec,
  expiresAtEpochSec: token.expiresAtEpochSec,
  refreshAtEpochSec: token.refreshAtEpochSec,
  reissued: token.reissued === true,
});

const num = (v: AttributeValue | undefined): number | undefined => {
  const n = v?.N === undefined ? NaN : Number(v.N);
  return Number.isSafeInteger(n) ? n : undefined;
};

/** Reads an item as untrusted: the lease, the forced-fetch time, and the token if it is authentic (else unusable). */
export const parseItem = async (
  cacheKey: string,
  item: Record<string, AttributeValue> | undefined,
  open: OpenSealed,
): Promise<StoredEntry> => {
  if (!item) return {};
  const entry: StoredEntry = {};
  // As the conditions read them (lease-rules.ts coordinationTimeMs): a time of another type is none, and a lease
  // time holds whoever is named as owner.
  const leaseOwner = item.leaseOwner?.S;
  const leaseUntil = coordinationTimeMs(item.leaseUntilEpochMs?.N);
  if (leaseUntil !== undefined)
    entry.lease = { ...(leaseOwner === undefined ? {} : { owner: leaseOwner }), untilEpochMs: leaseUntil };
  const forcedFetchAt = coordinationTimeMs(item.forcedFetchAtEpochMs?.N);
  if (forcedFetchAt !== undefined) entry.forcedFetchAtEpochMs = forcedFetchAt;
  if (!item.tokenCiphertext) return entry; // a lease-only item: no token yet
  const ciphertext = item.tokenCiphertext.B;
  const unusable = (reason: UnusableItemReason, detail?: string): StoredEntry => ({
    ...entry,
    unusable: reason,
    ...(detail === undefined ? {} : { unusableDetail: detail }),
    ...(ciphertext ? { unusableCiphertext: ciphertext } : {}),
  });
  if (num(item.itemFormat) !== ITEM_FORMAT) return unusable('previous_item_format');
  const fields = {
    client: item.client?.S,
    scope: item.scope?.S,
    issuedAtEpochSec: num(item.issuedAtEpochSec),
    expiresAtEpochSec: num(item[TABLE_TTL_ATTRIBUTE]),
    refreshAtEpochSec: num(item.refreshAtEpochSec),
    reissued: item.reissued?.BOOL,
  };
  const wrappedDataKey = item.wrappedDataKey?.B;
  if (!ciphertext || !wrappedDataKey || !isComplete(fields)) return unusable('malformed_item');
  try {
    const accessToken = await open({ ciphertext, wrappedDataKey }, itemAad(cacheKey, fields));
    const { issuedAtEpochSec, expiresAtEpochSec, refreshAtEpochSec, reissued } = fields;
    const scopes = fields.scope.split(' ').filter((s) => s !== '');
    entry.token = {
      accessToken,
      scopes,
      issuedAtEpochSec,
      expiresAtEpochSec,
      refreshAtEpochSec,
      ...(reissued ? { reissued } : {}),
    };
    return entry;
  } catch (err) {
    const reason = (err as { reason?: unknown }).reason;
    return unusable('decrypt_failed', typeof reason === 'string' ? reason : 'unknown');
  }
};

const isComplete = (f: { [K in keyof SealedFields]: SealedFields[K] | undefined }): f is SealedFields =>
  Object.values(f).every((v) => v !== undefined);
