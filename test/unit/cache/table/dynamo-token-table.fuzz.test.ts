import { type AttributeValue, type DynamoDBClient, GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { DecryptCommand, GenerateDataKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { DynamoTokenTable } from '../../../../functions/lib/cache/table/dynamo-token-table';
import { TABLE_PARTITION_KEY } from '../../../../functions/lib/cache/table/table-schema';
import { TokenCipher } from '../../../../functions/lib/cache/table/token-cipher';
import type { CachedToken } from '../../../../functions/lib/domain/cached-token';
import type { StoredEntry } from '../../../../functions/lib/ports';
import { runs } from '../../../support/fakes/fuzz';

/**
 * Table items are untrusted on the way back: whatever a table writer puts in an item, reading it gives the token
 * that was sealed, a miss with the reason the item is unusable, or no token (a lease-only item), and never
 * throws. Random DynamoDB AttributeValue maps and edits of real items (written by DynamoTokenTable.writeToken) go
 * through DynamoTokenTable's own reading, the real TokenCipher (AES-GCM, item fields as additional data) and two
 * fakes at the I/O edge: DynamoDB (answers the item under test) and KMS (one data key, for this table only).
 */
const TABLE = 'tokens-fuzz';
const KEY = 'v1:0f0f';
const NOW = Date.parse('2026-11-29T08:00:00Z');
const DATA_KEY = Buffer.alloc(32, 7);
const WRAPPED = Buffer.from('wrapped-data-key-of-tokens-fuzz');

const kms = {
  send: async (command: unknown) => {
    if (command instanceof GenerateDataKeyCommand) return { Plaintext: DATA_KEY, CiphertextBlob: WRAPPED };
    if (command instanceof DecryptCommand) {
      const { CiphertextBlob, EncryptionContext } = command.input;
      if (CiphertextBlob && WRAPPED.equals(Buffer.from(CiphertextBlob)) && EncryptionContext?.tokenTable === TABLE)
        return { Plaintext: DATA_KEY };
      throw Object.assign(new Error('invalid ciphertext'), { name: 'InvalidCiphertextException' });
    }
    throw new Error(`the fake KMS does not do ${(command as object).constructor.name}`);
  },
} as unknown as KMSClient;

/** What the fake table answers, and what the store last asked it to write. */
const table = {
  answer: undefined as Record<string, AttributeValue> | undefined,
  leaseHeld: false,
  written: undefined as UpdateItemCommand['input'] | undefined,
};
const ddb = {
  send: async (command: unknown) => {
    if (command instanceof GetItemCommand) return { Item: table.answer };
    if (command instanceof UpdateItemCommand) {
      table.written = command.input;
      if (command.input.ReturnValues !== 'ALL_NEW') return {}; // writeToken
      if (!table.leaseHeld) return { Attributes: table.answer };
      throw Object.assign(new Error('condition failed'), {
        name: 'ConditionalCheckFailedException',
        Item: table.answer,
      });
    }
    throw new Error(`the fake DynamoDB does not do ${(command as object).constructor.name}`);
  },
} as unknown as DynamoDBClient;

const store = new DynamoTokenTable(ddb, TABLE, new TokenCipher(kms, 'alias/broker', { nowMs: () => NOW }, 300));

/** The item a SET-only UpdateItem makes of nothing (what writeToken writes to a new key). */
const applySet = (input: UpdateItemCommand['input']): Record<string, AttributeValue> => {
  const set = /^SET (.*?)(?: REMOVE .*)?$/.exec(input.UpdateExpression ?? '')?.[1] ?? '';
  const item: Record<string, AttributeValue> = { [TABLE_PARTITION_KEY]: { S: KEY } };
  for (const assignment of set.split(', ')) {
    const [path, value] = assignment.split(' = ') as [string, string];
    const name = path.startsWith('#') ? input.ExpressionAttributeNames![path]! : path;
    item[name] = input.ExpressionAttributeValues![value]!;
  }
  return item;
};

const numberText = fc.oneof(
  fc.integer().map(String),
  fc.double().map(String),
  fc.constantFrom('', ' 1', '1.0', '1e400', '-0', '0x10', '9007199254740993', 'NaN', 'Infinity'),
  fc.string({ maxLength: 12 }),
);
const bytes = fc.uint8Array({ maxLength: 80 });
/** Any AttributeValue, including shapes DynamoDB never returns (none or several types set). */
const attributeValue: fc.Arbitrary<AttributeValue> = fc.letrec<{ value: AttributeValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ S: fc.string({ maxLength: 40 }) }),
    fc.record({ N: numberText }),
    fc.record({ B: bytes }),
    fc.record({ BOOL: fc.boolean() }),
    fc.constant({ NULL: true }),
    fc.record({ SS: fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }) }),
    fc.record({ NS: fc.array(numberText, { maxLength: 3 }) }),
    fc.record({ BS: fc.array(bytes, { maxLength: 2 }) }),
    fc.record({ L: fc.array(tie('value'), { maxLength: 3 }) }),
    fc.record({ M: fc.dictionary(fc.string({ maxLength: 8 }), tie('value'), { maxKeys: 3 }) }),
    fc.constant({} as AttributeValue),
    fc.record({ S: fc.string({ maxLength: 8 }), N: numberText, B: bytes }) as unknown as fc.Arbitrary<AttributeValue>,
  ) as fc.Arbitrary<AttributeValue>,
})).value;

/** A small edit of a stored value that keeps its type: the edits a table writer would try first. */
const nudged = (value: AttributeValue): fc.Arbitrary<AttributeValue> => {
  if (value.N !== undefined) {
    const n = Number(value.N);
    return fc.constantFrom(
      { N: String(n + 1) },
      { N: String(n - 1) },
      { N: String(n + 86_400) },
      { N: `${value.N}.0` },
      { N: `${value.N}.5` },
    );
  }
  if (value.S !== undefined)
    return fc.constantFrom(
      { S: `${value.S} x` },
      { S: value.S.slice(1) },
      { S: value.S.toUpperCase() },
      { S: `${value.S}  ` },
      { S: '' },
    );
  if (value.BOOL !== undefined) return fc.constant({ BOOL: !value.BOOL });
  if (value.B !== undefined) {
    const original = value.B;
    return fc.nat({ max: Math.max(0, original.length - 1) }).chain((i) =>
      fc.constantFrom(
        (() => {
          const b = Buffer.from(original);
          b[i] = (b[i]! ^ 1) & 0xff;
          return { B: b };
        })(),
        { B: original.subarray(0, i) },
        { B: Buffer.concat([original, Buffer.of(0)]) },
      ),
    );
  }
  return attributeValue;
};

/** An item: a real one with some attributes nudged, replaced, removed or added; or any map of AttributeValues. */
const items = (valid: Record<string, AttributeValue>[]) => {
  const edited = fc
    .constantFrom(...valid)
    .chain((item) =>
      fc.tuple(
        fc.constant(item),
        fc.array(
          fc.tuple(
            fc.oneof(
              fc.constantFrom(...Object.keys(item), 'leaseOwner', 'leaseUntilEpochMs', 'forcedFetchAtEpochMs'),
              fc.string({ maxLength: 8 }),
            ),
            fc.constantFrom('nudge', 'replace', 'remove'),
            attributeValue,
          ),
          { maxLength: 3 },
        ),
      ),
    )
    .chain(([item, edits]) => {
      const out: Record<string, AttributeValue> = { ...item };
      const nudges: fc.Arbitrary<[string, AttributeValue]>[] = [];
      for (const [name, how, replacement] of edits) {
        if (how === 'remove') delete out[name];
        else if (how === 'replace' || out[name] === undefined)
          Object.defineProperty(out, name, {
            value: replacement,
            enumerable: true,
            configurable: true,
            writable: true,
          });
        else nudges.push(nudged(out[name]).map((v) => [name, v] as [string, AttributeValue]));
      }
      return fc.tuple(...nudges).map((pairs) => {
        for (const [name, v] of pairs) out[name] = v;
        return out;
      });
    });
  const random = fc.dictionary(
    fc.oneof(
      fc.constantFrom(
        'tokenCiphertext',
        'wrappedDataKey',
        'itemFormat',
        'client',
        'scope',
        'issuedAtEpochSec',
        'expiresAtEpochSec',
        'refreshAtEpochSec',
        'reissued',
        'leaseOwner',
        'leaseUntilEpochMs',
        'forcedFetchAtEpochMs',
      ),
      fc.string({ maxLength: 8 }),
    ),
    attributeValue,
    { maxKeys: 12 },
  );
  return fc.oneof(
    { weight: 1, arbitrary: fc.constantFrom(...valid) },
    { weight: 6, arbitrary: edited },
    { weight: 3, arbitrary: random },
  );
};

describe('table items on the way back (DynamoTokenTable)', () => {
  const tokens: CachedToken[] = [
    {
      accessToken: 'tok-fuzz-1',
      scopes: ['a', 'b'],
      issuedAtEpochSec: 1_795_932_000,
      expiresAtEpochSec: 1_795_935_600,
      refreshAtEpochSec: 1_795_934_700,
    },
    {
      accessToken: 'tok-fuzz-2',
      scopes: ['a'],
      issuedAtEpochSec: 1_795_932_000,
      expiresAtEpochSec: 1_795_935_600,
      refreshAtEpochSec: 1_795_935_600,
      reissued: true,
    },
  ];
  const valid: Record<string, AttributeValue>[] = [];
  beforeAll(async () => {
    for (const token of tokens) {
      table.answer = undefined;
      await store.writeToken(KEY, token, 'limitrail');
      valid.push(applySet(table.written!));
    }
  });

  /** The outcomes an item may have; anything else, or a throw, fails the property. */
  const classify = (
    item: Record<string, AttributeValue>,
    cacheKey: string,
    entry: StoredEntry,
  ): 'token' | 'unusable' | 'no token' => {
    // Coordination times are read as the conditions compare them: any number (a lease with or without an owner).
    if (entry.lease !== undefined) {
      expect(['string', 'undefined']).toContain(typeof entry.lease.owner);
      expect(Number.isFinite(entry.lease.untilEpochMs)).toBe(true);
      expect(item.leaseUntilEpochMs?.N).toBeDefined();
    }
    if (entry.forcedFetchAtEpochMs !== undefined) {
      expect(Number.isFinite(entry.forcedFetchAtEpochMs)).toBe(true);
      expect(item.forcedFetchAtEpochMs?.N).toBeDefined();
    }
    if (entry.token !== undefined) {
      expect(entry.unusable).toBeUndefined();
      // Only the token that was sealed, with every field as sealed, under the key it was sealed for.
      expect(cacheKey).toBe(KEY);
      expect(tokens).toContainEqual(entry.token);
      return 'token';
    }
    if (entry.unusable !== undefined) {
      expect(entry.unusable).toMatch(/^[a-z_]+(: .+)?$/);
      return 'unusable';
    }
    expect(item.tokenCiphertext).toBeUndefined();
    return 'no token';
  };

  it('reads the items DynamoTokenTable writes as their tokens', async () => {
    for (const [i, item] of valid.entries()) {
      table.answer = item;
      expect((await store.read(KEY)).token).toEqual(tokens[i]);
    }
  });

  it('reads any item, by any way in, as its sealed token, an unusable item with a reason, or no token; never throws', async () => {
    const seen = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(
        items(valid),
        fc.constantFrom(KEY, 'v1:another-key'),
        fc.constantFrom('read', 'lease taken', 'lease held'),
        async (item, cacheKey, way) => {
          table.answer = item;
          table.leaseHeld = way === 'lease held';
          const entry =
            way === 'read'
              ? await store.read(cacheKey, true)
              : (await store.tryAcquireLease(cacheKey, 'me', { nowMs: NOW, leaseDurationMs: 8000 })).entry;
          const outcome = classify(item, cacheKey, entry);
          seen.set(outcome, (seen.get(outcome) ?? 0) + 1);
        },
      ),
      runs(3000),
    );
    expect([...seen.keys()].sort()).toEqual(['no token', 'token', 'unusable']);
  });
});
