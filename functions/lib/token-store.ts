import { GetItemCommand, UpdateItemCommand, type AttributeValue, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { describeAwsError } from './aws-errors';
import { tokenFingerprint } from './cache-key';
import { UnavailableError } from './errors';
import { TABLE_PARTITION_KEY, TABLE_TTL_ATTRIBUTE } from './table-schema';
import type { TokenCipher } from './token-cipher';
import type { CachedToken } from './token-lifetime';

/**
 * The shared token cache in DynamoDB: one item per cache key holding the token (access token envelope-encrypted,
 * `expiresAtEpochSec` as the table's TTL attribute) and, while a container refreshes it, the refresh lease
 * (`leaseOwner`, `leaseUntilEpochMs`). Token and lease share the item, so one consistent read shows both and a
 * token write releases the lease atomically. Items are untrusted on the way back: anything malformed, tampered
 * or moved is a miss, never a crash.
 */
export interface Lease {
  owner: string;
  untilEpochMs: number;
}

export interface StoredEntry {
  token?: CachedToken;
  /** Why an item that holds a token could not be used (it is treated as a miss). */
  unusable?: string;
  lease?: Lease;
}

export type LeaseAttempt = { acquired: true; entry: StoredEntry } | { acquired: false; entry: StoredEntry };

/** Binds a sealed token to its item: moved onto another key or given another expiry, it fails to decrypt. */
export const itemAad = (cacheKey: string, expiresAtEpochSec: number): string =>
  `limitrail-token-broker/v1|${cacheKey}|${expiresAtEpochSec}`;

/** A lease-only item (no token yet) lives this long past its lease before DynamoDB's TTL removes it. */
const LEASE_ITEM_GRACE_SEC = 300;

const num = (v: AttributeValue | undefined): number | undefined => {
  const n = v?.N === undefined ? NaN : Number(v.N);
  return Number.isSafeInteger(n) ? n : undefined;
};

const isConditionFailure = (err: unknown): boolean =>
  (err as { name?: unknown }).name === 'ConditionalCheckFailedException';

const unavailable = (what: string, err: unknown) =>
  new UnavailableError(`DynamoDB ${what} failed: ${describeAwsError(err)}`, 'table_unavailable', { cause: err });

export class TokenStore {
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
   * Takes the refresh lease unless another owner holds an unexpired one. Either way the answer carries the item
   * as it now is (strongly consistent): a token another holder has just written is seen without another read.
   */
  async tryAcquireLease(cacheKey: string, owner: string, nowMs: number, leaseUntilEpochMs: number): Promise<LeaseAttempt> {
    try {
      const out = await this.ddb.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: this.#key(cacheKey),
          UpdateExpression: 'SET leaseOwner = :owner, leaseUntilEpochMs = :until, #expires = if_not_exists(#expires, :leaseTtl)',
          ConditionExpression: 'attribute_not_exists(leaseUntilEpochMs) OR leaseUntilEpochMs < :now',
          ExpressionAttributeNames: { '#expires': TABLE_TTL_ATTRIBUTE },
          ExpressionAttributeValues: {
            ':owner': { S: owner },
            ':until': { N: String(leaseUntilEpochMs) },
            ':now': { N: String(nowMs) },
            ':leaseTtl': { N: String(Math.ceil(leaseUntilEpochMs / 1000) + LEASE_ITEM_GRACE_SEC) },
          },
          ReturnValues: 'ALL_NEW',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return { acquired: true, entry: await this.#parse(cacheKey, out.Attributes) };
    } catch (err) {
      if (isConditionFailure(err)) {
        const current = (err as { Item?: Record<string, AttributeValue> }).Item;
        return { acquired: false, entry: current ? await this.#parse(cacheKey, current) : await this.read(cacheKey, true) };
      }
      throw unavailable('lease', err);
    }
  }

  /**
   * Writes a token and releases `owner`'s lease in one conditional update. Skipped (false) when the table holds a
   * token that lives longer — the cache never goes back in time — or another owner holds the lease (its write
   * will follow). `owner` undefined writes without a lease (degraded or lease-less mode).
   */
  async writeToken(cacheKey: string, token: CachedToken, clientName: string, owner?: string): Promise<boolean> {
    const sealed = await this.cipher.seal(token.accessToken, itemAad(cacheKey, token.expiresAtEpochSec));
    const values: Record<string, AttributeValue> = {
      ':expires': { N: String(token.expiresAtEpochSec) },
      ':issued': { N: String(token.issuedAtEpochSec) },
      ':refresh': { N: String(token.refreshAtEpochSec) },
      ':reissued': { BOOL: token.reissued === true },
      ':client': { S: clientName },
      ':scope': { S: token.scopes.join(' ') },
      ':fingerprint': { S: tokenFingerprint(token.accessToken) },
      ':ciphertext': { B: sealed.ciphertext },
      ':wrappedKey': { B: sealed.wrappedDataKey },
    };
    if (owner !== undefined) values[':owner'] = { S: owner };
    try {
      await this.ddb.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: this.#key(cacheKey),
          UpdateExpression:
            'SET #expires = :expires, issuedAtEpochSec = :issued, refreshAtEpochSec = :refresh, reissued = :reissued, ' +
            'client = :client, #scope = :scope, tokenFingerprint = :fingerprint, tokenCiphertext = :ciphertext, ' +
            'wrappedDataKey = :wrappedKey' +
            (owner === undefined ? '' : ' REMOVE leaseOwner, leaseUntilEpochMs'),
          ConditionExpression:
            '(attribute_not_exists(tokenCiphertext) OR #expires <= :expires) AND ' +
            (owner === undefined ? 'attribute_not_exists(leaseOwner)' : '(attribute_not_exists(leaseOwner) OR leaseOwner = :owner)'),
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
    return this.#updateIfOwner(cacheKey, owner, 'SET leaseUntilEpochMs = :until', { ':until': { N: String(leaseUntilEpochMs) } }, 'lease renewal');
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
    const leaseOwner = item.leaseOwner?.S;
    const leaseUntil = num(item.leaseUntilEpochMs);
    if (leaseOwner !== undefined && leaseUntil !== undefined) entry.lease = { owner: leaseOwner, untilEpochMs: leaseUntil };
    if (!item.tokenCiphertext) return entry; // a lease-only item: no token yet
    const expiresAtEpochSec = num(item[TABLE_TTL_ATTRIBUTE]);
    const issuedAtEpochSec = num(item.issuedAtEpochSec);
    const refreshAtEpochSec = num(item.refreshAtEpochSec);
    const scope = item.scope?.S;
    const ciphertext = item.tokenCiphertext.B;
    const wrappedDataKey = item.wrappedDataKey?.B;
    if (
      expiresAtEpochSec === undefined ||
      issuedAtEpochSec === undefined ||
      refreshAtEpochSec === undefined ||
      scope === undefined ||
      !ciphertext ||
      !wrappedDataKey
    ) {
      entry.unusable = 'malformed_item';
      return entry;
    }
    try {
      const accessToken = await this.cipher.open({ ciphertext, wrappedDataKey }, itemAad(cacheKey, expiresAtEpochSec));
      const scopes = scope.split(' ').filter((s) => s !== '');
      const reissued = item.reissued?.BOOL === true;
      entry.token = { accessToken, scopes, issuedAtEpochSec, expiresAtEpochSec, refreshAtEpochSec, ...(reissued ? { reissued } : {}) };
    } catch (err) {
      const reason = (err as { reason?: unknown }).reason;
      entry.unusable = `decrypt_failed: ${typeof reason === 'string' ? reason : 'unknown'}`;
    }
    return entry;
  }
}
