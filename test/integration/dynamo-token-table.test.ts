import { randomUUID } from 'node:crypto';
import { type AttributeValue, DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoTokenTable } from '../../functions/lib/cache/table/dynamo-token-table';
import { TABLE_PARTITION_KEY } from '../../functions/lib/cache/table/table-schema';
import { TokenCipher } from '../../functions/lib/cache/table/token-cipher';
import { type CachedToken, lifetimeOf } from '../../functions/lib/domain/cached-token';
import { systemClock } from '../../functions/lib/shared/clock';
import { setupLocalAws } from '../support/stacks/aws-setup';
import { REGION } from '../support/stacks/broker-stack';
import { type MotoServer, startMoto } from '../support/stacks/moto';

/**
 * The token table's conditional writes as DynamoDB evaluates them: the real DynamoTokenTable and TokenCipher against
 * moto_server (DynamoDB, KMS). The unit tests' in-memory table (test/support/lease-world.ts) restates the
 * conditions; here the expressions DynamoTokenTable sends are the ones judged. The cache never goes back in time (a
 * token is not replaced by one that expires earlier), and a holder whose lease ran out while it fetched cannot
 * overwrite, or release, the lease of the container that took over.
 */
const TABLE = 'tokens-store-conditions';
const LEASE_MS = 1_000;
let moto: MotoServer;
let ddb: DynamoDBClient;
let kms: KMSClient;
let store: DynamoTokenTable;

const newKey = () => `v1:${randomUUID()}`;
/** A token issued `issuedAgoSec` ago that lives `lifetimeSec`. */
const token = (name: string, issuedAgoSec: number, lifetimeSec: number): CachedToken => ({
  accessToken: `${name}-${randomUUID()}`,
  scopes: ['limitrail.usage.read'],
  ...lifetimeOf(Date.now() - issuedAgoSec * 1000, lifetimeSec),
});
/** The item exactly as stored (consistent read), attribute by attribute. */
const rawItem = async (key: string): Promise<Record<string, AttributeValue> | undefined> =>
  (
    await ddb.send(
      new GetItemCommand({ TableName: TABLE, Key: { [TABLE_PARTITION_KEY]: { S: key } }, ConsistentRead: true }),
    )
  ).Item;
const storedToken = async (key: string) => (await store.read(key, true)).token?.accessToken;

beforeAll(async () => {
  moto = await startMoto();
  const { kmsKeyId } = await setupLocalAws({
    endpoint: moto.endpoint,
    region: REGION,
    tableName: TABLE,
    secretId: 'limitrail/token-store-test',
    secretValue: { client_id: 'unused', client_secret: 'unused' },
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  const config = {
    endpoint: moto.endpoint,
    region: REGION,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  };
  ddb = new DynamoDBClient(config);
  kms = new KMSClient(config);
  store = new DynamoTokenTable(ddb, TABLE, new TokenCipher(kms, kmsKeyId, systemClock, 300));
});
afterAll(async () => {
  ddb?.destroy();
  kms?.destroy();
  await moto?.stop();
});

describe('a token written without a lease (degraded or lease-less mode)', () => {
  it('is refused when the table holds a token that expires later, and leaves the item as it was', async () => {
    const key = newKey();
    const later = token('expires-later', 0, 3600);
    expect(await store.writeToken(key, later, 'limitrail')).toBe(true);
    const before = await rawItem(key);
    const earlier = token('expires-earlier', 0, 1800);
    expect(await store.writeToken(key, earlier, 'limitrail')).toBe(false);
    expect(await rawItem(key)).toEqual(before);
    expect(await storedToken(key)).toBe(later.accessToken);
  });

  it('replaces a token that expires earlier, or in the same second (a re-issued token)', async () => {
    const key = newKey();
    const first = token('first', 60, 3600);
    expect(await store.writeToken(key, first, 'limitrail')).toBe(true);
    const longer = token('longer', 0, 3600);
    expect(longer.expiresAtEpochSec).toBeGreaterThan(first.expiresAtEpochSec);
    expect(await store.writeToken(key, longer, 'limitrail')).toBe(true);
    expect(await storedToken(key)).toBe(longer.accessToken);
    const sameExpiry = { ...longer, accessToken: `same-expiry-${randomUUID()}`, reissued: true };
    expect(await store.writeToken(key, sameExpiry, 'limitrail')).toBe(true);
    expect(await storedToken(key)).toBe(sameExpiry.accessToken);
  });

  it('is refused while a container holds the lease (its write follows), leaving the lease in place', async () => {
    const key = newKey();
    const nowMs = Date.now();
    expect((await store.tryAcquireLease(key, 'holder', { nowMs, leaseDurationMs: 60_000 })).acquired).toBe(true);
    const before = await rawItem(key);
    expect(await store.writeToken(key, token('lease-less', 0, 3600), 'limitrail')).toBe(false);
    expect(await rawItem(key)).toEqual(before);
    expect((await store.read(key, true)).lease).toEqual({ owner: 'holder', untilEpochMs: nowMs + 60_000 });
  });
});

describe("a holder's own lease", () => {
  it('is renewed and released only by its owner', async () => {
    const key = newKey();
    const nowMs = Date.now();
    await store.tryAcquireLease(key, 'holder', { nowMs, leaseDurationMs: LEASE_MS });
    expect(await store.renewLease(key, 'someone-else', nowMs + 5 * LEASE_MS)).toBe(false);
    await store.releaseLease(key, 'someone-else');
    expect((await store.read(key, true)).lease).toEqual({ owner: 'holder', untilEpochMs: nowMs + LEASE_MS });
    expect(await store.renewLease(key, 'holder', nowMs + 2 * LEASE_MS)).toBe(true);
    expect((await store.read(key, true)).lease).toEqual({ owner: 'holder', untilEpochMs: nowMs + 2 * LEASE_MS });
    await store.releaseLease(key, 'holder');
    expect((await store.read(key, true)).lease).toBeUndefined();
  });

  it('is given back when its write is refused (a longer-lived token is stored), so nobody waits for it to end', async () => {
    const key = newKey();
    const longLived = token('long-lived', 0, 7200);
    expect(await store.writeToken(key, longLived, 'limitrail')).toBe(true);
    expect((await store.tryAcquireLease(key, 'holder', { nowMs: Date.now(), leaseDurationMs: 60_000 })).acquired).toBe(
      true,
    );
    expect(await store.writeToken(key, token('shorter', 0, 3600), 'limitrail', 'holder')).toBe(false);
    const entry = await store.read(key, true);
    expect(entry.token?.accessToken).toBe(longLived.accessToken);
    expect(entry.lease).toBeUndefined();
  });
});

describe('the late write of a holder whose lease ran out while it fetched', () => {
  /** A took the lease at t0; it ran out; B took it over: the item as B's take left it. */
  const takenOver = async (key: string) => {
    const t0 = Date.now();
    expect((await store.tryAcquireLease(key, 'holder-a', { nowMs: t0, leaseDurationMs: LEASE_MS })).acquired).toBe(
      true,
    );
    const later = t0 + LEASE_MS + 1;
    // Still held one millisecond before it ends: the take-over waits for the end.
    expect(
      (await store.tryAcquireLease(key, 'holder-b', { nowMs: later - 2, leaseDurationMs: LEASE_MS })).acquired,
    ).toBe(false);
    expect((await store.tryAcquireLease(key, 'holder-b', { nowMs: later, leaseDurationMs: LEASE_MS })).acquired).toBe(
      true,
    );
    return later;
  };

  it("is refused while the successor holds the lease: the successor's lease is neither overwritten nor released", async () => {
    const key = newKey();
    const later = await takenOver(key);
    const before = await rawItem(key);
    expect(await store.writeToken(key, token('late-a', 0, 3600), 'limitrail', 'holder-a')).toBe(false);
    expect(await rawItem(key)).toEqual(before);
    expect((await store.read(key, true)).lease).toEqual({ owner: 'holder-b', untilEpochMs: later + LEASE_MS });
    // The successor's own write goes through and releases its lease.
    const b = token('b', 0, 3600);
    expect(await store.writeToken(key, b, 'limitrail', 'holder-b')).toBe(true);
    const entry = await store.read(key, true);
    expect(entry.token?.accessToken).toBe(b.accessToken);
    expect(entry.lease).toBeUndefined();
  });

  it('does not replace the longer-lived token the successor wrote in the meantime', async () => {
    const key = newKey();
    await takenOver(key);
    const b = token('b', 0, 3600);
    expect(await store.writeToken(key, b, 'limitrail', 'holder-b')).toBe(true);
    const before = await rawItem(key);
    // A's request left a minute earlier: its token expires a minute before B's.
    const late = token('late-a', 60, 3600);
    expect(await store.writeToken(key, late, 'limitrail', 'holder-a')).toBe(false);
    expect(await rawItem(key)).toEqual(before);
    expect(await storedToken(key)).toBe(b.accessToken);
  });
});
