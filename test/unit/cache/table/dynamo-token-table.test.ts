import type { AttributeValue, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DecryptCommand, GenerateDataKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { describe, expect, it } from 'vitest';
import { DynamoTokenTable } from '../../../../functions/lib/cache/table/dynamo-token-table';
import { ITEM_FORMAT, itemAad, type SealedFields } from '../../../../functions/lib/cache/table/item-codec';
import { TABLE_PARTITION_KEY, TABLE_TTL_ATTRIBUTE } from '../../../../functions/lib/cache/table/table-schema';
import { TokenCipher } from '../../../../functions/lib/cache/table/token-cipher';
import type { CachedToken } from '../../../../functions/lib/domain/cached-token';
import type { StoredEntry } from '../../../../functions/lib/ports';
import { UnavailableError } from '../../../../functions/lib/shared/errors';
import { FakeDynamoDB } from '../../../support/fakes/fake-dynamodb';

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

/**
 * DynamoTokenTable's requests as DynamoDB answers them: a fake DynamoDB (test/support/fakes/fake-dynamodb.ts) that
 * evaluates the condition expressions it is sent, applies the update expressions and refuses what DynamoDB refuses,
 * and a fake KMS with one data key. test/integration/dynamo-token-table.test.ts runs the same against moto.
 */
describe('the token table against a DynamoDB that evaluates what it is sent', () => {
  const TABLE = 'tokens';
  const KEY = 'v1:key';
  const NOW = Date.parse('2026-11-29T06:00:00Z');
  const LEASE_MS = 8_000;
  const DATA_KEY = Buffer.alloc(32, 3);
  const WRAPPED = Buffer.from('wrapped-data-key');
  const kms = {
    send: async (command: unknown) => {
      if (command instanceof GenerateDataKeyCommand) return { Plaintext: DATA_KEY, CiphertextBlob: WRAPPED };
      if (command instanceof DecryptCommand) return { Plaintext: DATA_KEY };
      throw new Error(`the fake KMS does not do ${(command as object).constructor.name}`);
    },
  } as unknown as KMSClient;
  const setup = () => {
    const ddb = new FakeDynamoDB(TABLE);
    const store = new DynamoTokenTable(
      ddb.client,
      TABLE,
      new TokenCipher(kms, 'alias/broker', { nowMs: () => NOW }, 300),
    );
    return { ddb, store, item: (key = KEY) => ddb.items.get(key) };
  };
  const token = (name: string, expiresInSec: number, scopes = ['limitrail.usage.read']): CachedToken => ({
    accessToken: `${name}-token`,
    scopes,
    issuedAtEpochSec: NOW / 1000,
    expiresAtEpochSec: NOW / 1000 + expiresInSec,
    refreshAtEpochSec: NOW / 1000 + Math.floor(expiresInSec * 0.75),
  });
  const rejection = async (pending: Promise<unknown>) => {
    const err = await pending.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UnavailableError);
    return err as UnavailableError;
  };

  describe('the refresh lease', () => {
    it('is taken on a new key until now + its duration; the lease-only item expires (TTL) minutes after the lease', async () => {
      const { store, item } = setup();
      const taken = await store.tryAcquireLease(KEY, 'a', { nowMs: NOW, leaseDurationMs: LEASE_MS });
      expect(taken).toEqual({ acquired: true, entry: { lease: { owner: 'a', untilEpochMs: NOW + LEASE_MS } } });
      const ttl = Number(item()?.[TABLE_TTL_ATTRIBUTE]?.N);
      expect(ttl).toBeGreaterThan((NOW + LEASE_MS) / 1000);
      expect(ttl).toBeLessThanOrEqual((NOW + LEASE_MS) / 1000 + 600);
    });

    it("keeps a stored token's expiry as the item's TTL when a lease is taken on it", async () => {
      const { store, item } = setup();
      const stored = token('stored', 3600);
      expect(await store.writeToken(KEY, stored, 'limitrail')).toBe(true);
      await store.tryAcquireLease(KEY, 'a', { nowMs: NOW, leaseDurationMs: LEASE_MS });
      expect(item()?.[TABLE_TTL_ATTRIBUTE]).toEqual({ N: String(stored.expiresAtEpochSec) });
    });

    it("is refused while held, answering the holder's lease from the refused write, without another read", async () => {
      const { ddb, store } = setup();
      await store.tryAcquireLease(KEY, 'a', { nowMs: NOW, leaseDurationMs: LEASE_MS });
      const refused = await store.tryAcquireLease(KEY, 'b', { nowMs: NOW + 1, leaseDurationMs: LEASE_MS });
      expect(refused).toEqual({ acquired: false, entry: { lease: { owner: 'a', untilEpochMs: NOW + LEASE_MS } } });
      expect(ddb.requests.filter((r) => r.command === 'GetItem')).toEqual([]);
    });

    it('reads the item consistently when a refused write does not return it', async () => {
      const { ddb, store } = setup();
      await store.tryAcquireLease(KEY, 'a', { nowMs: NOW, leaseDurationMs: LEASE_MS });
      ddb.returnsOldItem = false;
      const refused = await store.tryAcquireLease(KEY, 'b', { nowMs: NOW + 1, leaseDurationMs: LEASE_MS });
      expect(refused.entry.lease).toEqual({ owner: 'a', untilEpochMs: NOW + LEASE_MS });
      expect(ddb.requests.filter((r) => r.command === 'GetItem').map((r) => r.input.ConsistentRead)).toEqual([true]);
    });

    it('is renewed only by its owner', async () => {
      const { store } = setup();
      await store.tryAcquireLease(KEY, 'a', { nowMs: NOW, leaseDurationMs: LEASE_MS });
      expect(await store.renewLease(KEY, 'b', NOW + 5 * LEASE_MS)).toBe(false);
      expect(await store.renewLease(KEY, 'a', NOW + 2 * LEASE_MS)).toBe(true);
      expect((await store.read(KEY, true)).lease).toEqual({ owner: 'a', untilEpochMs: NOW + 2 * LEASE_MS });
    });

    it('taken for a forced fetch, records it; released with it, puts the key back so the next forced take goes through', async () => {
      const { store } = setup();
      const forced = { leaseDurationMs: LEASE_MS, forceRefreshIntervalMs: 60_000 };
      const taken = await store.tryAcquireLease(KEY, 'a', { nowMs: NOW, ...forced });
      expect(taken.entry).toEqual({ lease: { owner: 'a', untilEpochMs: NOW + LEASE_MS }, forcedFetchAtEpochMs: NOW });
      await store.releaseLease(KEY, 'a');
      expect(await store.read(KEY, true)).toEqual({ forcedFetchAtEpochMs: NOW });
      // Within the interval, the recorded forced fetch refuses another, though nobody holds the lease.
      expect((await store.tryAcquireLease(KEY, 'b', { nowMs: NOW + 1, ...forced })).acquired).toBe(false);
      expect((await store.tryAcquireLease(KEY, 'a', { nowMs: NOW + 2, ...forced })).acquired).toBe(false);
      // A fetch that did not happen is given back with the lease: the key is as before the take.
      await store.tryAcquireLease(KEY, 'c', { nowMs: NOW + 3, leaseDurationMs: LEASE_MS });
      await store.releaseLease(KEY, 'c', { forcedFetch: true });
      expect(await store.read(KEY, true)).toEqual({});
      expect((await store.tryAcquireLease(KEY, 'b', { nowMs: NOW + 4, ...forced })).acquired).toBe(true);
    });

    it('is released only by its owner', async () => {
      const { store } = setup();
      await store.tryAcquireLease(KEY, 'a', { nowMs: NOW, leaseDurationMs: LEASE_MS });
      await store.releaseLease(KEY, 'b', { forcedFetch: true });
      expect((await store.read(KEY, true)).lease).toEqual({ owner: 'a', untilEpochMs: NOW + LEASE_MS });
      await store.releaseLease(KEY, 'a');
      expect((await store.read(KEY, true)).lease).toBeUndefined();
    });
  });

  describe('a token write', () => {
    it("by the lease's holder stores the token and gives the lease back in the same write", async () => {
      const { store } = setup();
      await store.tryAcquireLease(KEY, 'a', { nowMs: NOW, leaseDurationMs: LEASE_MS });
      const written = token('written', 3600);
      expect(await store.writeToken(KEY, written, 'limitrail', 'a')).toBe(true);
      expect(await store.read(KEY, true)).toEqual({ token: written });
    });

    it('refused (a longer-lived token is stored) answers false and gives the lease back', async () => {
      const { store } = setup();
      const longer = token('longer', 7200);
      await store.writeToken(KEY, longer, 'limitrail');
      await store.tryAcquireLease(KEY, 'a', { nowMs: NOW, leaseDurationMs: LEASE_MS });
      expect(await store.writeToken(KEY, token('shorter', 3600), 'limitrail', 'a')).toBe(false);
      expect(await store.read(KEY, true)).toEqual({ token: longer });
    });

    it('reads back as the token written, a token without scopes included', async () => {
      const { ddb, store } = setup();
      for (const scopes of [[], ['a'], ['a', 'b']]) {
        const written = { ...token(`scopes-${scopes.length}`, 3600 + scopes.length, scopes), reissued: true };
        expect(await store.writeToken(KEY, written, 'limitrail')).toBe(true);
        expect((await store.read(KEY)).token).toEqual(written);
      }
      // The hot path reads eventually consistent (half the cost); lease coordination asks for a consistent read.
      expect(ddb.requests.filter((r) => r.command === 'GetItem').map((r) => r.input.ConsistentRead)).toEqual([
        false,
        false,
        false,
      ]);
    });
  });

  describe("a caller's forced-refresh budget", () => {
    const HOUR_MS = 3_600_000;
    it('is spent once per interval, answering when it was spent; its item expires (TTL) minutes after the interval', async () => {
      const { store, item } = setup();
      expect(await store.claimForceBudget('budget-v1:c', { nowMs: NOW, intervalMs: HOUR_MS })).toEqual({
        claimed: true,
      });
      const ttl = Number(item('budget-v1:c')?.[TABLE_TTL_ATTRIBUTE]?.N);
      expect(ttl).toBeGreaterThanOrEqual((NOW + HOUR_MS) / 1000);
      expect(ttl).toBeLessThanOrEqual((NOW + HOUR_MS) / 1000 + 600);
      expect(await store.claimForceBudget('budget-v1:c', { nowMs: NOW + HOUR_MS - 1, intervalMs: HOUR_MS })).toEqual({
        claimed: false,
        spentAtEpochMs: NOW,
      });
      expect(await store.claimForceBudget('budget-v1:c', { nowMs: NOW + HOUR_MS, intervalMs: HOUR_MS })).toEqual({
        claimed: true,
      });
    });
  });

  describe('an outage of the table', () => {
    const throttled = () =>
      Object.assign(new Error('throttled'), {
        name: 'ProvisionedThroughputExceededException',
        $metadata: { httpStatusCode: 400 },
      });
    const calls = (store: DynamoTokenTable): [string, () => Promise<unknown>][] => [
      ['read', () => store.read(KEY)],
      ['lease', () => store.tryAcquireLease(KEY, 'b', { nowMs: NOW, leaseDurationMs: LEASE_MS })],
      ['write', () => store.writeToken(KEY, token('t', 3600), 'limitrail', 'a')],
      ['write without a lease', () => store.writeToken(KEY, token('t', 3600), 'limitrail')],
      ['renewal', () => store.renewLease(KEY, 'a', NOW + LEASE_MS)],
      ['release', () => store.releaseLease(KEY, 'a')],
      ['budget', () => store.claimForceBudget('budget-v1:c', { nowMs: NOW, intervalMs: 60_000 })],
    ];

    it.each([undefined, 'UpdateItem'] as const)(
      'fails every call it reaches with table_unavailable, never as a miss or a refusal (failing: %s)',
      async (only) => {
        const { ddb, store } = setup();
        await store.tryAcquireLease(KEY, 'a', { nowMs: NOW, leaseDurationMs: LEASE_MS });
        ddb.failure = { error: throttled(), ...(only ? { only } : {}) };
        for (const [what, call] of calls(store)) {
          if (only === 'UpdateItem' && what === 'read') continue;
          const err = await rejection(call());
          expect(err.reason, what).toBe('table_unavailable');
          expect(err.message, what).toContain('ProvisionedThroughputExceededException');
        }
      },
    );
  });

  describe('items read back as untrusted', () => {
    const stored = token('stored', 3600);
    const edited = async (edit: (item: Record<string, AttributeValue>) => void) => {
      const { store, item } = setup();
      await store.writeToken(KEY, stored, 'limitrail');
      const raw = item() as Record<string, AttributeValue>;
      const ciphertext = raw.tokenCiphertext?.B;
      edit(raw);
      return { entry: await store.read(KEY), ciphertext };
    };

    it('an item in another item format is a miss (previous_item_format), whatever its token', async () => {
      for (const edit of [
        (i: Record<string, AttributeValue>) => (i.itemFormat = { N: String(ITEM_FORMAT - 1) }),
        (i: Record<string, AttributeValue>) => delete i.itemFormat,
      ]) {
        const { entry, ciphertext } = await edited(edit);
        expect(entry).toEqual({ unusable: 'previous_item_format', unusableCiphertext: ciphertext });
      }
    });

    it.each(['client', 'scope', 'issuedAtEpochSec', TABLE_TTL_ATTRIBUTE, 'refreshAtEpochSec', 'reissued'])(
      'an item without %s is malformed_item, not opened, and keeps its ciphertext so it can be replaced',
      async (field) => {
        const { entry, ciphertext } = await edited((i) => delete i[field]);
        expect(entry).toEqual({ unusable: 'malformed_item', unusableCiphertext: ciphertext });
        expect(ciphertext).toBeDefined();
      },
    );

    it('an item with a field edited does not decrypt: decrypt_failed, with why', async () => {
      const { entry, ciphertext } = await edited((i) => (i.scope = { S: 'limitrail.admin' }));
      expect(entry).toEqual({
        unusable: 'decrypt_failed',
        unusableDetail: 'authentication failed',
        unusableCiphertext: ciphertext,
      });
    });
  });
});
