import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import {
  type AttributeValue,
  DeleteItemCommand,
  DynamoDBClient,
  PutItemCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { GenerateDataKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TABLE_PARTITION_KEY } from '../../functions/lib/cache/table/table-schema';
import { cacheKeyFor } from '../../functions/lib/domain/cache-key';
import type { RuntimeOverrides } from '../../functions/lib/runtime';
import { setupLocalAws } from '../support/stacks/aws-setup';
import {
  type BrokerStack,
  inProcessContainer,
  REGION,
  SECRET_ID,
  seedToken,
  startBrokerStack,
} from '../support/stacks/broker-stack';

/**
 * What someone who can write the token table can and cannot do, against real moto_server (DynamoDB, KMS) and the
 * LimitRail sandbox: a lease they set delays others at most REFRESH_LEASE_MS; a field they edit, an item in the
 * previous format, or an item copied from another stage's table is a miss (logged with its reason, counted), never
 * served; and the next token fetched replaces it. Attributes of another type than a broker writes (a lease time or
 * forced fetch that is not a number, a ciphertext that is not binary) count as absent, both when the broker reads
 * the item and in its conditional writes: they can neither pin the lease nor lift the forced-refresh limit, nor keep
 * the item from being replaced. An earlier authentic item put back is not served by a container that saw the newer
 * token (rollback-guard.ts).
 */
const LEASE_MS = 1500;
const logLines: string[] = [];
const handedOut = new Set<string>();
let stack: BrokerStack;

type Answer = Record<string, unknown>;
const upstream = () => stack.sandbox.stats().tokenRequests;
const keyOf = (scopes: string[]) =>
  cacheKeyFor(stack.sandbox.tokenUrl, stack.sandbox.clients[0]!.clientId, [...scopes].sort());
const itemOf = async (scopes: string[]) =>
  (await stack.scanTable()).find((i) => i[TABLE_PARTITION_KEY]?.S === keyOf(scopes));

/** A cold container; what it logged during the call is returned beside the answer. */
const coldCall = async (
  event: unknown,
  env: Record<string, string> = {},
  context = {},
  overrides: RuntimeOverrides = {},
) => {
  const from = logLines.length;
  const answer: Answer = await inProcessContainer({ ...stack.env, ...env }, logLines, overrides, context)(event);
  if (typeof answer.access_token === 'string') handedOut.add(answer.access_token);
  const lines = logLines.slice(from).map((l) => JSON.parse(l) as Record<string, unknown>);
  return { answer, lines, metrics: lines.find((l) => l._aws) ?? {} };
};

/** Replaces the key's whole item with `attributes`. */
const putItem = (scopes: string[], attributes: Record<string, AttributeValue>) =>
  stack.dynamodb.send(
    new PutItemCommand({
      TableName: stack.tableName,
      Item: { [TABLE_PARTITION_KEY]: { S: keyOf(scopes) }, ...attributes },
    }),
  );

/** A DynamoDB client for one container that counts the UpdateItem calls (lease takes, token writes) it sends. */
const countingDynamoDb = () => {
  const counted = { updates: 0 };
  const client = new DynamoDBClient({
    endpoint: stack.moto.endpoint,
    region: REGION,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if ((context as { commandName?: string }).commandName === 'UpdateItemCommand') counted.updates += 1;
      return next(args);
    },
    { step: 'initialize' },
  );
  return Object.assign(counted, { client });
};

const sha256 = (text: unknown) => createHash('sha256').update(String(text)).digest('hex');

const edit = (scopes: string[], set: string, values: Record<string, AttributeValue>) =>
  stack.dynamodb.send(
    new UpdateItemCommand({
      TableName: stack.tableName,
      Key: { [TABLE_PARTITION_KEY]: { S: keyOf(scopes) } },
      UpdateExpression: `SET ${set}`,
      ExpressionAttributeNames: set.includes('#scope') ? { '#scope': 'scope' } : undefined,
      ExpressionAttributeValues: values,
    }),
  );

beforeAll(async () => {
  stack = await startBrokerStack({ env: { REFRESH_LEASE_MS: String(LEASE_MS) }, tableName: 'tokens-table-writer' });
  Object.assign(process.env, stack.env);
});
afterAll(async () => stack?.stop());

describe('a lease cannot be pinned', () => {
  const pin = (scopes: string[]) =>
    edit(
      scopes,
      'leaseOwner = :owner, leaseUntilEpochMs = :until, expiresAtEpochSec = if_not_exists(expiresAtEpochSec, :ttl)',
      {
        ':owner': { S: 'pinned-by-a-table-writer' },
        ':until': { N: String(Date.now() + 86_400_000) },
        ':ttl': { N: String(Math.floor(Date.now() / 1000) + 86_400) },
      },
    );

  it('takes over a lease that ends beyond REFRESH_LEASE_MS at once, instead of waiting until its own deadline', async () => {
    const scopes = ['limitrail.usage.write'];
    await pin(scopes);
    const before = upstream();
    const { answer } = await coldCall({ scopes }, {}, { getRemainingTimeInMillis: () => 3_000 });
    expect(answer.error).toBeUndefined();
    expect(answer.token_type).toBe('Bearer');
    expect(upstream() - before).toBe(1);
    expect((await itemOf(scopes))?.leaseOwner).toBeUndefined();
  });

  it('refreshes ahead past a pinned lease instead of staying quiet for as long as it says', async () => {
    const scopes = ['limitrail.accounts.read', 'limitrail.usage.write'];
    const seeded = await seedToken(stack, scopes, {
      accessToken: 'seeded-past-refresh-point-pinned',
      ageSec: 3000,
      lifetimeSec: 3600,
    });
    await pin(scopes);
    const before = upstream();
    const { answer } = await coldCall({ scopes });
    expect(answer.access_token).not.toBe(seeded.accessToken);
    expect(upstream() - before).toBe(1);
  });

  it("waits out a dead holder's lease of REFRESH_LEASE_MS, then takes over and answers", async () => {
    const scopes = ['limitrail.runtime.read', 'limitrail.usage.write'];
    await edit(scopes, 'leaseOwner = :owner, leaseUntilEpochMs = :until', {
      ':owner': { S: 'a-holder-that-died' },
      ':until': { N: String(Date.now() + LEASE_MS) },
    });
    const before = upstream();
    const { answer, metrics } = await coldCall({ scopes }, {}, { getRemainingTimeInMillis: () => LEASE_MS + 3_000 });
    expect(answer.token_type).toBe('Bearer');
    expect(metrics).toMatchObject({ LeaseWaits: 1 });
    expect(upstream() - before).toBe(1);
  });
  it('treats a lease time that is not a number as no lease: concurrent misses still make one upstream request', async () => {
    const scopes = ['limitrail.accounts.read', 'limitrail.runtime.read', 'limitrail.usage.write'];
    await putItem(scopes, {
      leaseOwner: { S: 'pinned-by-a-table-writer' },
      leaseUntilEpochMs: { S: String(Date.now() + 86_400_000) },
    });
    const before = upstream();
    const calls = await Promise.all(
      Array.from({ length: 3 }, () => coldCall({ scopes }, {}, { getRemainingTimeInMillis: () => 3_000 })),
    );
    for (const { answer, metrics } of calls) {
      expect(answer.token_type).toBe('Bearer');
      expect(metrics).not.toHaveProperty('TableBypass'); // the table was used, not treated as down
    }
    expect(new Set(calls.map((c) => c.answer.access_token)).size).toBe(1);
    expect(upstream() - before).toBe(1);
    const item = await itemOf(scopes);
    expect(item?.leaseUntilEpochMs).toBeUndefined(); // the holder's write released the lease it took over
    expect(item?.tokenCiphertext?.B).toBeDefined();
  });

  it('waits for a lease time without an owner, as held by someone, without retrying the take in a loop', async () => {
    const scopes = ['limitrail.runtime.read', 'limitrail.usage.read', 'limitrail.usage.write'];
    const leaseEndsInMs = 700; // well inside REFRESH_LEASE_MS: the answer must come before the 1.5 s, even on a loaded machine
    await putItem(scopes, { leaseUntilEpochMs: { N: String(Date.now() + leaseEndsInMs) } });
    const ddb = countingDynamoDb();
    const before = upstream();
    const startedAtMs = Date.now();
    const { answer, metrics } = await coldCall(
      { scopes },
      {},
      { getRemainingTimeInMillis: () => 3_000 },
      { dynamodb: ddb.client },
    ).finally(() => ddb.client.destroy());
    const tookMs = Date.now() - startedAtMs;
    // The take once the lease has ended and the token write: no take retried while the lease was held.
    expect(ddb.updates).toBeLessThanOrEqual(3);
    expect(answer.token_type).toBe('Bearer');
    expect(tookMs).toBeGreaterThanOrEqual(leaseEndsInMs - 50);
    expect(tookMs).toBeLessThan(LEASE_MS);
    expect(metrics).toMatchObject({ LeaseWaits: 1 });
    expect(upstream() - before).toBe(1);
  });
});

describe('the forced-refresh limit cannot be lifted', () => {
  it('treats a forced fetch time that is not a number as none: one forced fetch, then the limit holds', async () => {
    const scopes = ['limitrail.accounts.read', 'limitrail.usage.read', 'limitrail.usage.write'];
    let current = (await coldCall({ scopes })).answer.access_token;
    await edit(scopes, 'forcedFetchAtEpochMs = :v', { ':v': { S: 'a-table-writer-was-here' } });
    const before = upstream();
    const answers: Answer[] = [];
    for (let i = 0; i < 3; i++) {
      const { answer, metrics } = await coldCall({ scopes, forceRefresh: true, rejectedTokenSha256: sha256(current) });
      expect(metrics).not.toHaveProperty('TableBypass');
      answers.push(answer);
      if (typeof answer.access_token === 'string') current = answer.access_token;
    }
    expect(upstream() - before).toBe(1);
    expect(answers[0]!.token_type).toBe('Bearer');
    for (const refused of answers.slice(1)) {
      expect(refused).toMatchObject({ error: 'temporarily_unavailable', retryAfterSeconds: expect.any(Number) });
    }
    expect((await itemOf(scopes))?.forcedFetchAtEpochMs?.N).toBeDefined();
  });
});

describe('an unusable item is replaced whatever its attributes claim', () => {
  const farFuture = String(Math.floor(Date.now() / 1000) + 10 * 365 * 86_400);
  const garbage: [string, Record<string, AttributeValue>][] = [
    [
      'a ciphertext that is not binary and a far-future expiry',
      { tokenCiphertext: { S: 'x' }, expiresAtEpochSec: { N: farFuture } },
    ],
    [
      'a garbage binary ciphertext and an expiry that is not a number',
      { tokenCiphertext: { B: Buffer.from('garbage') }, expiresAtEpochSec: { S: farFuture } },
    ],
    [
      'neither a binary ciphertext nor a numeric expiry',
      { tokenCiphertext: { S: 'x' }, expiresAtEpochSec: { S: farFuture }, itemFormat: { N: '2' } },
    ],
    [
      'a null ciphertext and a far-future expiry',
      { tokenCiphertext: { NULL: true }, expiresAtEpochSec: { N: farFuture } },
    ],
  ];

  it.each(garbage)(
    'replaces an item with %s by the next token; the next cold container is a table hit',
    async (_name, attributes) => {
      const scopes = [
        'limitrail.accounts.read',
        'limitrail.runtime.read',
        'limitrail.usage.read',
        'limitrail.usage.write',
      ];
      await putItem(scopes, attributes);
      const before = upstream();
      const { answer, lines } = await coldCall({ scopes });
      expect(answer.token_type).toBe('Bearer');
      expect(upstream() - before).toBe(1);
      expect(lines).toContainEqual(expect.objectContaining({ message: 'cached item unusable, treated as a miss' }));
      expect(lines).not.toContainEqual(expect.objectContaining({ message: 'token not written to the table' }));
      expect((await itemOf(scopes))?.tokenCiphertext?.B).toBeDefined();
      const next = await coldCall({ scopes });
      expect(next.answer.access_token).toBe(answer.access_token);
      expect(upstream() - before).toBe(1);
    },
  );
});

describe('every item field the broker decides on is authenticated', () => {
  const fieldEdits: [string, string[], string, Record<string, AttributeValue>][] = [
    [
      'a bumped issue time',
      ['limitrail.usage.read'],
      'issuedAtEpochSec = issuedAtEpochSec + :n',
      { ':n': { N: '1800' } },
    ],
    [
      'a later refresh point',
      ['limitrail.accounts.read'],
      'refreshAtEpochSec = refreshAtEpochSec + :n',
      { ':n': { N: '100000' } },
    ],
    ['reissued set', ['limitrail.runtime.read'], 'reissued = :t', { ':t': { BOOL: true } }],
    [
      'a widened scope',
      ['limitrail.accounts.read', 'limitrail.runtime.read'],
      '#scope = :s',
      { ':s': { S: 'limitrail.accounts.read limitrail.admin limitrail.runtime.read' } },
    ],
    [
      'another client name',
      ['limitrail.accounts.read', 'limitrail.usage.read'],
      'client = :c',
      { ':c': { S: 'billing' } },
    ],
    [
      'a later expiry',
      ['limitrail.runtime.read', 'limitrail.usage.read'],
      'expiresAtEpochSec = expiresAtEpochSec + :n',
      { ':n': { N: '86400' } },
    ],
  ];

  it.each(fieldEdits)(
    'treats an item with %s as a miss, logged and counted, and replaces it',
    async (_name, scopes, set, values) => {
      const { answer: original } = await coldCall({ scopes });
      await edit(scopes, set, values);
      const before = upstream();
      const { answer, lines, metrics } = await coldCall({ scopes });
      expect(answer.token_type).toBe('Bearer');
      expect(answer.access_token).not.toBe(original.access_token);
      expect(answer.scope).toBe(scopes.join(' '));
      expect(upstream() - before).toBe(1);
      expect(lines).toContainEqual(
        expect.objectContaining({
          message: 'cached item unusable, treated as a miss',
          reason: expect.stringMatching(/^decrypt_failed/),
        }),
      );
      expect(metrics).toMatchObject({ UnusableItems: 1 });
      // The fresh token replaced the edited item: the next cold container is a table hit.
      const next = await coldCall({ scopes });
      expect(next.answer.access_token).toBe(answer.access_token);
      expect(upstream() - before).toBe(1);
    },
  );

  it('treats an item in the previous format as a miss, never a crash, and replaces it', async () => {
    const scopes = ['limitrail.accounts.read', 'limitrail.runtime.read', 'limitrail.usage.read'];
    await putPreviousFormatItem(scopes, 'token-written-by-the-previous-version');
    const before = upstream();
    const { answer, lines, metrics } = await coldCall({ scopes });
    expect(answer.access_token).not.toBe('token-written-by-the-previous-version');
    expect(upstream() - before).toBe(1);
    expect(lines).toContainEqual(
      expect.objectContaining({ message: 'cached item unusable, treated as a miss', reason: 'previous_item_format' }),
    );
    expect(metrics).toMatchObject({ UnusableItems: 1 });
    expect((await coldCall({ scopes })).answer.access_token).toBe(answer.access_token);
    expect(upstream() - before).toBe(1);
  });

  it("does not decrypt an item copied into another stage's table that shares the key", async () => {
    const scopes = ['limitrail.usage.read', 'limitrail.usage.write'];
    const { answer: original } = await coldCall({ scopes });
    const otherTable = 'tokens-table-writer-other-stage';
    const client = stack.sandbox.clients[0]!;
    await setupLocalAws({
      endpoint: stack.moto.endpoint,
      region: REGION,
      tableName: otherTable,
      secretId: SECRET_ID,
      secretValue: { client_id: client.clientId, client_secret: client.clientSecret },
    });
    await stack.dynamodb.send(new PutItemCommand({ TableName: otherTable, Item: (await itemOf(scopes))! }));
    const before = upstream();
    const { answer, lines, metrics } = await coldCall({ scopes }, { TOKEN_TABLE_NAME: otherTable });
    expect(answer.access_token).not.toBe(original.access_token);
    expect(upstream() - before).toBe(1);
    expect(lines).toContainEqual(
      expect.objectContaining({
        message: 'cached item unusable, treated as a miss',
        reason: expect.stringMatching(/^decrypt_failed: data key not unwrapped/),
      }),
    );
    expect(metrics).toMatchObject({ UnusableItems: 1, DecryptFailures: 1 });
  });
});

describe('a key rolled back to an earlier authentic item', () => {
  it('is not served by a container that saw the newer token: a miss, logged rollback_suspected and counted', async () => {
    const [rolled, other] = [['limitrail.usage.read'], ['limitrail.accounts.read']];
    for (const scopes of [rolled, other]) {
      await stack.dynamodb.send(
        new DeleteItemCommand({ TableName: stack.tableName, Key: { [TABLE_PARTITION_KEY]: { S: keyOf(scopes) } } }),
      );
    }
    // Two authentic items of the key, as the broker writes them: an older one, then a newer one replacing it.
    const older = await seedToken(stack, rolled, {
      accessToken: 'older-authentic-token',
      ageSec: 600,
      lifetimeSec: 3600,
    });
    const olderItem = (await itemOf(rolled))!;
    const newer = await seedToken(stack, rolled, {
      accessToken: 'newer-authentic-token',
      ageSec: 60,
      lifetimeSec: 3600,
    });
    // A container whose memory holds one key, so that it reads the table for the key again later, serves the newer.
    const invoke = inProcessContainer({ ...stack.env, MEMORY_CACHE_MAX_ENTRIES: '1' }, logLines);
    expect((await invoke({ scopes: rolled })).access_token).toBe(newer.accessToken);
    handedOut.add((await invoke({ scopes: other })).access_token as string); // the rolled key leaves its memory
    // Someone who can write the table (but not use the key) puts the older item back: it still decrypts.
    await stack.dynamodb.send(new PutItemCommand({ TableName: stack.tableName, Item: olderItem }));
    const before = upstream();
    const from = logLines.length;
    const again = await invoke({ scopes: rolled });
    handedOut.add(again.access_token as string);
    const lines = logLines.slice(from).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(again.token_type).toBe('Bearer');
    expect(again.access_token).not.toBe(older.accessToken);
    expect(upstream() - before).toBe(1);
    expect(lines).toContainEqual(
      expect.objectContaining({
        reason: 'rollback_suspected',
        verdict: 'older_than_served',
        tokenFingerprint: sha256(older.accessToken).slice(0, 12),
      }),
    );
    expect(lines.find((l) => l._aws)).toMatchObject({ RollbackSuspected: 1 });
    // The token fetched replaced the older item.
    expect((await coldCall({ scopes: rolled })).answer.access_token).toBe(again.access_token);
  });
});

describe('logs of the whole run', () => {
  it('contain no handed-out token', () => {
    expect(handedOut.size).toBeGreaterThan(5);
    const all = logLines.join('\n');
    for (const token of handedOut) expect(all).not.toContain(token);
  });
});

/**
 * An item exactly as the previous version wrote it: no item format attribute, a data key under the encryption
 * context without the table, and only the cache key and expiry as additional data.
 */
const putPreviousFormatItem = async (scopes: string[], accessToken: string) => {
  const kms = new KMSClient({
    endpoint: stack.moto.endpoint,
    region: REGION,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  const dataKey = await kms.send(
    new GenerateDataKeyCommand({
      KeyId: stack.kmsKeyId,
      KeySpec: 'AES_256',
      EncryptionContext: { purpose: 'limitrail-token-broker/token-cache' },
    }),
  );
  kms.destroy();
  const cacheKey = keyOf(scopes);
  const issuedAtEpochSec = Math.floor(Date.now() / 1000) - 60;
  const expiresAtEpochSec = issuedAtEpochSec + 3600;
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', Buffer.from(dataKey.Plaintext!), iv);
  cipher.setAAD(Buffer.from(`limitrail-token-broker/v1|${cacheKey}|${expiresAtEpochSec}`, 'utf8'));
  const body = Buffer.concat([cipher.update(accessToken, 'utf8'), cipher.final()]);
  await stack.dynamodb.send(
    new PutItemCommand({
      TableName: stack.tableName,
      Item: {
        [TABLE_PARTITION_KEY]: { S: cacheKey },
        expiresAtEpochSec: { N: String(expiresAtEpochSec) },
        issuedAtEpochSec: { N: String(issuedAtEpochSec) },
        refreshAtEpochSec: { N: String(issuedAtEpochSec + 2700) },
        reissued: { BOOL: false },
        client: { S: 'limitrail' },
        scope: { S: [...scopes].sort().join(' ') },
        tokenFingerprint: { S: 'aaaaaaaaaaaa' },
        tokenCiphertext: { B: Buffer.concat([Buffer.of(1), iv, body, cipher.getAuthTag()]) },
        wrappedDataKey: { B: dataKey.CiphertextBlob! },
      },
    }),
  );
};
