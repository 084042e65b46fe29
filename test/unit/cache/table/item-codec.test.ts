import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { describe, expect, it } from 'vitest';
import { ITEM_FORMAT, parseItem } from '../../../../functions/lib/cache/table/item-codec';
import { TokenDecryptError } from '../../../../functions/lib/cache/table/token-cipher';

/**
 * Reading an item whose sealed token does not open (item-codec.ts parseItem): the item is a miss whose detail says why,
 * as the broker logs it (`reason: decrypt_failed: <detail>`), whatever the opener threw.
 */
const ITEM: Record<string, AttributeValue> = {
  cacheKey: { S: 'v1:key' },
  itemFormat: { N: String(ITEM_FORMAT) },
  client: { S: 'limitrail' },
  scope: { S: 'a b' },
  issuedAtEpochSec: { N: '1795932000' },
  expiresAtEpochSec: { N: '1795935600' },
  refreshAtEpochSec: { N: '1795934700' },
  reissued: { BOOL: false },
  tokenCiphertext: { B: Buffer.from('sealed') },
  wrappedDataKey: { B: Buffer.from('wrapped') },
};

describe('an item whose token does not open', () => {
  it("is decrypt_failed with the opener's reason, or 'unknown' when what it threw names none", async () => {
    const failing = (err: unknown) => async () => {
      throw err;
    };
    for (const [thrown, detail] of [
      [new TokenDecryptError('authentication failed'), 'authentication failed'],
      [new Error('not a decrypt error'), 'unknown'],
      [Object.assign(new Error('odd'), { reason: 7 }), 'unknown'],
    ] as const) {
      expect(await parseItem('v1:key', ITEM, failing(thrown))).toEqual({
        unusable: 'decrypt_failed',
        unusableDetail: detail,
        unusableCiphertext: ITEM.tokenCiphertext?.B,
      });
    }
  });
});
