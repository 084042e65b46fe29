/**
 * The shared token cache in DynamoDB: one item per cache key holding the token (access token envelope-encrypted,
 * `expiresAtEpochSec` as the table's TTL attribute), while a container refreshes it the refresh lease
 * (`leaseOwner`, `leaseUntilEpochMs`), and the time of the last forced fetch (`forcedFetchAtEpochMs`). Token and
 * lease share the item, so one consistent read shows both and a token write releases the lease atomically. Items
 * are untrusted on the way back: every token field is bound to the sealed token (itemAad), and anything malformed,
 * edited, moved or in the previous format is a miss, never a crash. The lease and forced-fetch times are bounded
 * instead (lease-rules.ts). An attribute of another type than this code writes counts as absent both when an item is
 * read and in the conditions of the writes (`NOT attribute_type(...)`), so a container never decides on a reading
 * its own conditional write contradicts, and a comparison of different types never decides (DynamoDB answers false,
 * moto fails the request).
 */
import { type AttributeValue, type DynamoDBClient, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { tokenFingerprint } from '../../domain/cache-key';
import type { CachedToken } from '../../domain/cached-token';
import type { LeaseAttempt, LeaseRequest, StoredEntry, TokenTable } from '../../ports';
import { describeAwsError } from '../../shared/aws-errors';
import { UnavailableError, type UnusableItemReason } from '../../shared/errors';
import { CLOCK_SKEW_MS, coordinationTimeMs, latestLeaseEndMs } from '../lease/lease-rules';
import { TABLE_PARTITION_KEY, TABLE_TTL_ATTRIBUTE } from './table-schema';
import type { TokenCipher } from './token-cipher';

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

/** A lease-only item (no token yet) lives this long past its lease before DynamoDB's TTL removes it. */
const LEASE_ITEM_GRACE_SEC = 300;

const num = (v: AttributeValue | undefined): number | undefined => {
  const n = v?.N === undefined ? NaN : Number(v.N);
  return Number.isSafeInteger(n) ? n : undefined;
};

/** For `attribute_type` in conditions. */
const TYPE_VALUES = { ':numberType': { S: 'N' }, ':binaryType': { S: 'B' } } as const;

const isConditionFailure = (err: unknown): boolean =>
  (err as { name?: unknown }).name === 'ConditionalCheckFailedException';

const unavailable = (what: string, err: unknown) =>
  new UnavailableError(`DynamoDB ${what} failed: ${describeAwsError(err)}`, 'table_unavailable', { cause: err });

export class DynamoTokenTable implements TokenTable {
  constructor(
    private readonly ddb: DynamoDBClient,
    private readonly tableName: string,
    private readonly cipher: TokenCipher,
  ) {}

  /** Reads the item. `consistent` for lease coordination (sees every completed write). */
  async read(cacheKey: string, consistent = false): Promise<StoredEntry> {
    let item: Record<string, AttributeValue> | undefined;
    try {
      const out = await this.ddb.send(
        new GetItemCommand({ TableName: this.tableName, Key: this.#key(cacheKey), ConsistentRead: consistent }),
      );
      item = out.Item;
    } catch (err) {
      throw unavailable('read', err);
    }
    return this.#parse(cacheKey, item);
  }

  /**
   * Takes the refresh lease unless another owner holds it (lease-rules.ts isLeaseHeld: a lease ending further out
   * than any holder could set it counts as expired, so it cannot be pinned; one that is not a number counts as
   * none). With `forceRefreshIntervalMs`, also records this as the interval's forced fetch, only if none was made
   * within the interval (forcedFetchBlockedUntilMs).
   * Either way the answer carries the item as it now is (strongly consistent): a token another holder has just
   * written is seen without another read.
   */
  async tryAcquireLease(cacheKey: string, owner: string, request: LeaseRequest): Promise<LeaseAttempt> {
    const { nowMs, leaseDurationMs, forceRefreshIntervalMs } = request;
    const leaseUntilEpochMs = nowMs + leaseDurationMs;
    const forced = forceRefreshIntervalMs !== undefined;
    try {
      const out = await this.ddb.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: this.#key(cacheKey),
          UpdateExpression:
            'SET leaseOwner = :owner, leaseUntilEpochMs = :until, #expires = if_not_exists(#expires, :leaseTtl)' +
            (forced ? ', forcedFetchAtEpochMs = :now' : ''),
          ConditionExpression:
            // Type checks first: a comparison of different types never decides (moto would fail the request).
            '(NOT attribute_type(leaseUntilEpochMs, :numberType) OR leaseUntilEpochMs <= :now OR leaseUntilEpochMs > :latestLeaseEnd)' +
            (forced
              ? ' AND (NOT attribute_type(forcedFetchAtEpochMs, :numberType) OR forcedFetchAtEpochMs <= :quietSince OR forcedFetchAtEpochMs > :latestForced)'
              : ''),
          ExpressionAttributeNames: { '#expires': TABLE_TTL_ATTRIBUTE },
          ExpressionAttributeValues: {
            ':numberType': TYPE_VALUES[':numberType'],
            ':owner': { S: owner },
            ':until': { N: String(leaseUntilEpochMs) },
            ':now': { N: String(nowMs) },
            ':latestLeaseEnd': { N: String(latestLeaseEndMs(nowMs, leaseDurationMs)) },
            ':leaseTtl': { N: String(Math.ceil(leaseUntilEpochMs / 1000) + LEASE_ITEM_GRACE_SEC) },
            ...(forced
              ? {
                  ':quietSince': { N: String(nowMs - forceRefreshIntervalMs) },
                  ':latestForced': { N: String(nowMs + CLOCK_SKEW_MS) },
                }
              : {}),
          },
          ReturnValues: 'ALL_NEW',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return { acquired: true, entry: await this.#parse(cacheKey, out.Attributes) };
    } catch (err) {
      if (isConditionFailure(err)) {
        const current = (err as { Item?: Record<string, AttributeValue> }).Item;
        return {
          acquired: false,
          entry: current ? await this.#parse(cacheKey, current) : await this.read(cacheKey, true),
        };
      }
      throw unavailable('lease', err);
    }
  }

  /**
   * Writes a token and releases `owner`'s lease in one conditional update. Skipped (false) when the table holds a
   * token that lives longer — the cache never goes back in time — or another owner holds the lease (its write
   * will follow). `owner` undefined writes without a lease (degraded or lease-less mode). `replaces`: the sealed
   * token of an item found unusable; it is overwritten whatever expiry it claims (an edited one cannot block writes).
   * An item whose token is not binary or whose expiry is not a number was not written by a broker and can never be
   * read as a token: it is overwritten whatever it claims, with or without `replaces`.
   */
  async writeToken(
    cacheKey: string,
    token: CachedToken,
    clientName: string,
    owner?: string,
    replaces?: Uint8Array,
  ): Promise<boolean> {
    const fields: SealedFields = {
      client: clientName,
      scope: token.scopes.join(' '),
      issuedAtEpochSec: token.issuedAtEpochSec,
      expiresAtEpochSec: token.expiresAtEpochSec,
      refreshAtEpochSec: token.refreshAtEpochSec,
      reissued: token.reissued === true,
    };
    const sealed = await this.cipher.seal(token.accessToken, itemAad(cacheKey, fields), this.tableName);
    const values: Record<string, AttributeValue> = {
      ...TYPE_VALUES,
      ':format': { N: String(ITEM_FORMAT) },
      ':expires': { N: String(fields.expiresAtEpochSec) },
      ':issued': { N: String(fields.issuedAtEpochSec) },
      ':refresh': { N: String(fields.refreshAtEpochSec) },
      ':reissued': { BOOL: fields.reissued },
      ':client': { S: fields.client },
      ':scope': { S: fields.scope },
      ':fingerprint': { S: tokenFingerprint(token.accessToken) },
      ':ciphertext': { B: sealed.ciphertext },
      ':wrappedKey': { B: sealed.wrappedDataKey },
    };
    if (owner !== undefined) values[':owner'] = { S: owner };
    if (replaces !== undefined) values[':replaces'] = { B: replaces };
    try {
      await this.ddb.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: this.#key(cacheKey),
          UpdateExpression:
            'SET itemFormat = :format, #expires = :expires, issuedAtEpochSec = :issued, refreshAtEpochSec = :refresh, ' +
            'reissued = :reissued, client = :client, #scope = :scope, tokenFingerprint = :fingerprint, ' +
            'tokenCiphertext = :ciphertext, wrappedDataKey = :wrappedKey' +
            (owner === undefined ? '' : ' REMOVE leaseOwner, leaseUntilEpochMs'),
          ConditionExpression:
            // NOT attribute_type is also true when the attribute is missing (no token yet); type checks come first.
            '(NOT attribute_type(tokenCiphertext, :binaryType) OR NOT attribute_type(#expires, :numberType) OR #expires <= :expires' +
            `${replaces === undefined ? '' : ' OR tokenCiphertext = :replaces'}) AND ` +
            (owner === undefined
              ? 'attribute_not_exists(leaseOwner)'
              : '(attribute_not_exists(leaseOwner) OR leaseOwner = :owner)'),
          ExpressionAttributeNames: { '#expires': TABLE_TTL_ATTRIBUTE, '#scope': 'scope' },
          ExpressionAttributeValues: values,
        }),
      );
      return true;
    } catch (err) {
      if (!isConditionFailure(err)) throw unavailable('write', err);
      if (owner !== undefined) await this.releaseLease(cacheKey, owner);
      return false;
    }
  }

  /** Extends `owner`'s lease (before a retry). False if it no longer holds it. */
  renewLease(cacheKey: string, owner: string, leaseUntilEpochMs: number): Promise<boolean> {
    return this.#updateIfOwner(
      cacheKey,
      owner,
      'SET leaseUntilEpochMs = :until',
      { ':until': { N: String(leaseUntilEpochMs) } },
      'lease renewal',
    );
  }

  /** Gives the lease back if `owner` still holds it. */
  async releaseLease(cacheKey: string, owner: string): Promise<void> {
    await this.#updateIfOwner(cacheKey, owner, 'REMOVE leaseOwner, leaseUntilEpochMs', {}, 'lease release');
  }

  /** An update of the lease conditional on `owner` holding it; false when it does not. */
  async #updateIfOwner(
    cacheKey: string,
    owner: string,
    updateExpression: string,
    values: Record<string, AttributeValue>,
    what: string,
  ): Promise<boolean> {
    try {
      await this.ddb.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: this.#key(cacheKey),
          UpdateExpression: updateExpression,
          ConditionExpression: 'leaseOwner = :owner',
          ExpressionAttributeValues: { ...values, ':owner': { S: owner } },
        }),
      );
      return true;
    } catch (err) {
      if (isConditionFailure(err)) return false;
      throw unavailable(what, err);
    }
  }

  #key(cacheKey: string): Record<string, AttributeValue> {
    return { [TABLE_PARTITION_KEY]: { S: cacheKey } };
  }

  async #parse(cacheKey: string, item: Record<string, AttributeValue> | undefined): Promise<StoredEntry> {
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
      const accessToken = await this.cipher.open(
        { ciphertext, wrappedDataKey },
        itemAad(cacheKey, fields),
        this.tableName,
      );
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
  }
}

const isComplete = (f: { [K in keyof SealedFields]: SealedFields[K] | undefined }): f is SealedFields =>
  Object.values(f).every((v) => v !== undefined);
