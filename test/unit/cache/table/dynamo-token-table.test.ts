import type { AttributeValue, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { KMSClient } from '@aws-sdk/client-kms';
import { describe, expect, it } from 'vitest';
import { DynamoTokenTable } from '../../../../functions/lib/cache/table/dynamo-token-table';
import { ITEM_FORMAT, itemAad, type SealedFields } from '../../../../functions/lib/cache/table/item-codec';
import { TABLE_PARTITION_KEY } from '../../../../functions/lib/cache/table/table-schema';
import { TokenCipher } from '../../../../functions/lib/cache/table/token-cipher';
import type { StoredEntry } from '../../../../functions/lib/ports';

const fields: SealedFields = {
  client: 'limitrail',
  scope: 'limitrail.usage.read limitrail.usage.write',
  issuedAtEpochSec: 1_795_932_000,
  expiresAtEpochSec: 1_795_935_600,
  refreshAtEpochSec: 1_795_934_700,
  reissued: false,
};

describe('additional authenticated data of a cached token', () => {
  it('changes with the cache key and with every field the broker decides on or answers with', () => {
    const edited: { [K in keyof SealedFields]: SealedFields[K] } = {
      client: 'billing',
      scope: 'limitrail.admin limitrail.usage.read limitrail.usage.write',
      issuedAtEpochSec: fields.issuedAtEpochSec + 1800,
      expiresAtEpochSec: fields.expiresAtEpochSec + 86_400,
      refreshAtEpochSec: fields.expiresAtEpochSec,
      reissued: true,
    };
    // Every stored field is covered: a field added to SealedFields fails here until it has an edit.
    expect(Object.keys(edited).sort()).toEqual(Object.keys(fields).sort());
    const original = itemAad('v1:key', fields);
    for (const name of Object.keys(edited) as (keyof SealedFields)[]) {
      expect(itemAad('v1:key', { ...fields, [name]: edited[name] }), name).not.toBe(original);
    }
    expect(itemAad('v1:another-key', fields)).not.toBe(original);
  });

  it('names the item format, and cannot be matched by moving text from one field into the next', () => {
    expect(itemAad('v1:key', fields)).toContain(`item-v${ITEM_FORMAT}`);
    expect(itemAad('v1:key', { ...fields, client: 'a', scope: 'b c' })).not.toBe(
      itemAad('v1:key', { ...fields, client: 'a b', scope: 'c' }),
    );
  });
});

describe('coordination attributes, read as the conditional writes compare them', () => {
  const NOW = Date.parse('2026-11-29T06:00:00Z');
  const readItem = async (attributes: Record<string, AttributeValue>): Promise<StoredEntry> => {
    const ddb = {
      send: async () => ({ Item: { [TABLE_PARTITION_KEY]: { S: 'v1:key' }, ...attributes } }),
    } as unknown as DynamoDBClient;
    const unusedKms = {} as KMSClient; // lease-only items: nothing to decrypt
    return new DynamoTokenTable(
      ddb,
      'tokens',
      new TokenCipher(unusedKms, 'alias/broker', { nowMs: () => NOW }, 300),
    ).read('v1:key', true);
  };

  it('reads a lease time without an owner (or with one that is not a string) as held by an unknown owner', async () => {
    const until = { N: String(NOW + 1000) };
    expect((await readItem({ leaseUntilEpochMs: until })).lease).toEqual({ untilEpochMs: NOW + 1000 });
    expect((await readItem({ leaseUntilEpochMs: until, leaseOwner: { N: '7' } })).lease).toEqual({
      untilEpochMs: NOW + 1000,
    });
    expect((await readItem({ leaseUntilEpochMs: until, leaseOwner: { S: 'a' } })).lease).toEqual({
      owner: 'a',
      untilEpochMs: NOW + 1000,
    });
  });

  const notNumbers: AttributeValue[] = [
    { S: String(NOW + 1000) },
    { B: Buffer.from('1') },
    { BOOL: true },
    { NULL: true },
    { NS: [String(NOW + 1000)] },
    { N: 'NaN' },
    { N: '' },
    { N: ' 1' },
  ];

  it.each(notNumbers)(
    'reads a lease or forced fetch time %j as none (NOT attribute_type(x, N) in the conditions)',
    async (value) => {
      const entry = await readItem({ leaseOwner: { S: 'a' }, leaseUntilEpochMs: value, forcedFetchAtEpochMs: value });
      expect(entry.lease).toBeUndefined();
      expect(entry.forcedFetchAtEpochMs).toBeUndefined();
    },
  );

  it('reads any number as that number, as the conditions compare it', async () => {
    const entry = await readItem({
      leaseOwner: { S: 'a' },
      leaseUntilEpochMs: { N: `${NOW}.5` },
      forcedFetchAtEpochMs: { N: '1E+30' },
    });
    expect(entry.lease).toEqual({ owner: 'a', untilEpochMs: NOW + 0.5 });
    expect(entry.forcedFetchAtEpochMs).toBe(1e30);
  });
});
