import {
  GetItemCommand,
  PutItemCommand,
  type AttributeValue,
  type DynamoDBClient,
} from '@aws-sdk/client-dynamodb';
import { describeAwsError } from './aws-errors';
import { tokenFingerprint } from './cache-key';
import { UnavailableError } from './errors';
import { TABLE_PARTITION_KEY, TABLE_TTL_ATTRIBUTE } from './table-schema';
import type { TokenCipher } from './token-cipher';
import type { CachedToken } from './token-lifetime';

/**
 * The shared token cache in DynamoDB: one item per cache key, the access token envelope-encrypted, and
 * `expiresAtEpochSec` as the table's TTL attribute. Items are untrusted on the way back: anything malformed,
 * tampered or moved is a miss, never a crash.
 */
export type StoreRead =
  | { kind: 'hit'; token: CachedToken }
  | { kind: 'miss' }
  | { kind: 'unusable'; reason: string };

/** Binds a sealed token to its item: moved onto another key or given another expiry, it fails to decrypt. */
export const itemAad = (cacheKey: string, expiresAtEpochSec: number): string =>
  `limitrail-token-broker/v1|${cacheKey}|${expiresAtEpochSec}`;

const num = (v: AttributeValue | undefined): number | undefined => {
  const n = v?.N === undefined ? NaN : Number(v.N);
  return Number.isSafeInteger(n) ? n : undefined;
};

export class TokenStore {
  constructor(
    private readonly ddb: DynamoDBClient,
    private readonly tableName: string,
    private readonly cipher: TokenCipher,
  ) {}

  async get(cacheKey: string): Promise<StoreRead> {
    let item: Record<string, AttributeValue> | undefined;
    try {
      const out = await this.ddb.send(
        new GetItemCommand({ TableName: this.tableName, Key: { [TABLE_PARTITION_KEY]: { S: cacheKey } } }),
      );
      item = out.Item;
    } catch (err) {
      throw new UnavailableError(`DynamoDB read failed: ${describeAwsError(err)}`, 'table_unavailable', { cause: err });
    }
    if (!item) return { kind: 'miss' };
    const expiresAtEpochSec = num(item[TABLE_TTL_ATTRIBUTE]);
    const issuedAtEpochSec = num(item.issuedAtEpochSec);
    const scope = item.scope?.S;
    const ciphertext = item.tokenCiphertext?.B;
    const wrappedDataKey = item.wrappedDataKey?.B;
    if (expiresAtEpochSec === undefined || issuedAtEpochSec === undefined || scope === undefined || !ciphertext || !wrappedDataKey) {
      return { kind: 'unusable', reason: 'malformed_item' };
    }
    try {
      const accessToken = await this.cipher.open({ ciphertext, wrappedDataKey }, itemAad(cacheKey, expiresAtEpochSec));
      const scopes = scope.split(' ').filter((s) => s !== '');
      return { kind: 'hit', token: { accessToken, scopes, issuedAtEpochSec, expiresAtEpochSec } };
    } catch (err) {
      const reason = (err as { reason?: unknown }).reason;
      return { kind: 'unusable', reason: `decrypt_failed: ${typeof reason === 'string' ? reason : 'unknown'}` };
    }
  }

  /**
   * Writes the token unless the table already holds one that lives at least as long (a concurrent writer got
   * a newer token): the cache never goes back in time. Returns whether it wrote.
   */
  async put(cacheKey: string, token: CachedToken, clientName: string): Promise<boolean> {
    const sealed = await this.cipher.seal(token.accessToken, itemAad(cacheKey, token.expiresAtEpochSec));
    try {
      await this.ddb.send(
        new PutItemCommand({
          TableName: this.tableName,
          Item: {
            [TABLE_PARTITION_KEY]: { S: cacheKey },
            [TABLE_TTL_ATTRIBUTE]: { N: String(token.expiresAtEpochSec) },
            issuedAtEpochSec: { N: String(token.issuedAtEpochSec) },
            client: { S: clientName },
            scope: { S: token.scopes.join(' ') },
            tokenFingerprint: { S: tokenFingerprint(token.accessToken) },
            tokenCiphertext: { B: sealed.ciphertext },
            wrappedDataKey: { B: sealed.wrappedDataKey },
          },
          ConditionExpression: 'attribute_not_exists(#key) OR #expires < :expires',
          ExpressionAttributeNames: { '#key': TABLE_PARTITION_KEY, '#expires': TABLE_TTL_ATTRIBUTE },
          ExpressionAttributeValues: { ':expires': { N: String(token.expiresAtEpochSec) } },
        }),
      );
      return true;
    } catch (err) {
      if ((err as { name?: unknown }).name === 'ConditionalCheckFailedException') return false;
      throw new UnavailableError(`DynamoDB write failed: ${describeAwsError(err)}`, 'table_unavailable', { cause: err });
    }
  }
}
