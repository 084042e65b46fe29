/**
 * The shared token cache in DynamoDB (DynamoTokenTable, the TokenTable of ports.ts): one item per cache key holding
 * the token (access token envelope-encrypted, `expiresAtEpochSec` as the table's TTL attribute), while a container
 * refreshes it the refresh lease (`leaseOwner`, `leaseUntilEpochMs`), and the time of the last forced fetch
 * (`forcedFetchAtEpochMs`). Token and lease share the item, so one consistent read shows both and a token write
 * releases the lease atomically. Beside them, one item per caller and client holds its forced-refresh budget
 * (`budgetSpentAtEpochMs`, cache/lease/force-budget.ts). This module does the I/O only: the item format and its authentication are
 * item-codec.ts's, the write conditions conditions.ts's.
 */
import { type AttributeValue, type DynamoDBClient, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { tokenFingerprint } from '../../domain/cache-key';
import type { CachedToken } from '../../domain/cached-token';
import type { BudgetClaim, BudgetRequest, LeaseAttempt, LeaseRequest, StoredEntry, TokenTable } from '../../ports';
import { describeAwsError } from '../../shared/aws-errors';
import { UnavailableError } from '../../shared/errors';
import { coordinationTimeMs } from '../lease/lease-rules';
import {
  allOf,
  type Condition,
  forceBudgetUnspent,
  forcedFetchQuiet,
  leaseFreeOrOwnedBy,
  leaseTakeable,
  noLeaseOwner,
  noLongerLivedToken,
  ownsLease,
} from './conditions';
import { ITEM_FORMAT, itemAad, parseItem, sealedFieldsOf } from './item-codec';
import { TABLE_PARTITION_KEY, TABLE_TTL_ATTRIBUTE } from './table-schema';
import type { TokenCipher } from './token-cipher';

/** A lease-only item (no token yet) lives this long past its lease before DynamoDB's TTL removes it. */
const LEASE_ITEM_GRACE_SEC = 300;

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
    const condition = forced
      ? allOf(leaseTakeable(nowMs, leaseDurationMs), forcedFetchQuiet(nowMs, forceRefreshIntervalMs))
      : leaseTakeable(nowMs, leaseDurationMs);
    try {
      const out = await this.ddb.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: this.#key(cacheKey),
          UpdateExpression:
            'SET leaseOwner = :owner, leaseUntilEpochMs = :until, #expires = if_not_exists(#expires, :leaseTtl)' +
            (forced ? ', forcedFetchAtEpochMs = :now' : ''),
          ConditionExpression: condition.expression,
          ExpressionAttributeNames: { '#expires': TABLE_TTL_ATTRIBUTE },
          ExpressionAttributeValues: {
            ...condition.values,
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
    const fields = sealedFieldsOf(token, clientName);
    const sealed = await this.cipher.seal(token.accessToken, itemAad(cacheKey, fields), this.tableName);
    const values: Record<string, AttributeValue> = {
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
    const condition = allOf(
      noLongerLivedToken(fields.expiresAtEpochSec, replaces),
      owner === undefined ? noLeaseOwner() : leaseFreeOrOwnedBy(owner),
    );
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
          ConditionExpression: condition.expression,
          ExpressionAttributeNames: { ...condition.names, '#scope': 'scope' },
          ExpressionAttributeValues: { ...values, ...condition.values },
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
    return this.#updateIf(
      cacheKey,
      ownsLease(owner),
      'SET leaseUntilEpochMs = :until',
      { ':until': { N: String(leaseUntilEpochMs) } },
      'lease renewal',
    );
  }

  /**
   * Gives the lease back if `owner` still holds it; `forcedFetch`: and the forced fetch its take claimed. That take's
   * condition found no forced fetch within the interval, and nobody claims one without the lease, so removing the time
   * puts the key back as it was.
   */
  async releaseLease(cacheKey: string, owner: string, options: { forcedFetch?: boolean } = {}): Promise<void> {
    const remove = `REMOVE leaseOwner, leaseUntilEpochMs${options.forcedFetch ? ', forcedFetchAtEpochMs' : ''}`;
    await this.#updateIf(cacheKey, ownsLease(owner), remove, {}, 'lease release');
  }

  /**
   * Spends a caller's forced-refresh budget: its own item (`budgetKey`, domain/cache-key.ts forceBudgetKeyFor) records
   * this forced fetch, unless one was recorded within the interval (forceBudgetUnspent: a time that is not a
   * number, or one beyond the clock skew, counts as none, so a written value delays at most one interval). The item
   * expires (TTL) once the interval is over.
   */
  async claimForceBudget(budgetKey: string, { nowMs, intervalMs }: BudgetRequest): Promise<BudgetClaim> {
    const condition = forceBudgetUnspent(nowMs, intervalMs);
    try {
      await this.ddb.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: this.#key(budgetKey),
          UpdateExpression: 'SET budgetSpentAtEpochMs = :now, #expires = :budgetTtl',
          ConditionExpression: condition.expression,
          ExpressionAttributeNames: { '#expires': TABLE_TTL_ATTRIBUTE },
          ExpressionAttributeValues: {
            ...condition.values,
            ':now': { N: String(nowMs) },
            ':budgetTtl': { N: String(Math.ceil((nowMs + intervalMs) / 1000) + LEASE_ITEM_GRACE_SEC) },
          },
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return { claimed: true };
    } catch (err) {
      if (!isConditionFailure(err)) throw unavailable('forced-refresh budget', err);
      const spent = (err as { Item?: Record<string, AttributeValue> }).Item?.budgetSpentAtEpochMs;
      return { claimed: false, spentAtEpochMs: coordinationTimeMs(spent?.N) };
    }
  }

  /** An update of the item under `condition` (the lease's owner); false when it does not hold. */
  async #updateIf(
    key: string,
    condition: Condition,
    updateExpression: string,
    values: Record<string, AttributeValue>,
    what: string,
  ): Promise<boolean> {
    try {
      await this.ddb.send(
        new UpdateItemCommand({
          TableName: this.tableName,
          Key: this.#key(key),
          UpdateExpression: updateExpression,
          ConditionExpression: condition.expression,
          ExpressionAttributeValues: { ...values, ...condition.values },
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

  #parse(cacheKey: string, item: Record<string, AttributeValue> | undefined): Promise<StoredEntry> {
    return parseItem(cacheKey, item, (sealed, aad) => this.cipher.open(sealed, aad, this.tableName));
  }
}
