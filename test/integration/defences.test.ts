import { randomUUID } from 'node:crypto';
import { DynamoDBClient, GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TABLE_PARTITION_KEY } from '../../functions/lib/cache/table/table-schema';
import { cacheKeyFor } from '../../functions/lib/domain/cache-key';
import { isCredentialField, REDACTED } from '../../functions/lib/shared/logger';
import { MAX_RESPONSE_BYTES } from '../../functions/lib/upstream/token-endpoint';
import { type BrokerStack, inProcessContainer, REGION, startBrokerStack } from '../support/stacks/broker-stack';

/**
 * Defences that a hand mutation audit (issue 22) found proven by one test each, or by unit tests only, each proven
 * here once more end to end: the token function in process against moto_server (DynamoDB, Secrets Manager, KMS) and
 * the LimitRail sandbox, every container logging at DEBUG, its most verbose level.
 *   - the double check: a container that wins the lease decides again on the item as the take returned it;
 *   - a token is handed out only when the endpoint granted every scope asked;
 *   - the endpoint's answer is read up to MAX_RESPONSE_BYTES and no further;
 *   - a sealed token is bound to its cache key: a whole item moved onto another key is not served;
 *   - the logs of the whole run hold no client secret and no token, even where the endpoint echoes them.
 */
let stack: BrokerStack;
const logLines: string[] = [];
/** Every token the endpoint answered or the broker handed out: none may appear in any log line. */
const tokensSeen = new Set<string>();
const json = { 'content-type': 'application/json' };

type Answer = Record<string, unknown>;
const upstream = () => stack.sandbox.stats().tokenRequests;
const clientId = () => stack.sandbox.clients[0]!.clientId;
const keyOf = (tokenUrl: string, scopes: string[]) => cacheKeyFor(tokenUrl, clientId(), [...scopes].sort());
const tokenItems = async () =>
  (await stack.scanTable())
    .filter((i) => i.tokenCiphertext)
    .map((i) => `${i[TABLE_PARTITION_KEY]!.S}:${i.tokenFingerprint!.S}`)
    .sort();
const awsClientConfig = () => ({
  endpoint: stack.moto.endpoint,
  region: REGION,
  credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
});

/** A cold container; its answer, with the log lines it wrote during the call. */
const coldCall = async (event: unknown, env: Record<string, string> = {}, overrides = {}) => {
  const from = logLines.length;
  const answer: Answer = await inProcessContainer({ ...stack.env, ...env }, logLines, overrides)(event);
  if (typeof answer.access_token === 'string') tokensSeen.add(answer.access_token);
  return { answer, lines: logLines.slice(from).map((l) => JSON.parse(l) as Record<string, unknown>) };
};

/** A token answer of the endpoint's shape, padded with JSON whitespace to exactly `bytes` bytes. */
const tokenAnswerOf = (bytes: number, accessToken: string, scope: string) => {
  tokensSeen.add(accessToken);
  const text = JSON.stringify({ access_token: accessToken, token_type: 'Bearer', expires_in: 3600, scope });
  return `${text.slice(0, -1)}${' '.repeat(bytes - Buffer.byteLength(text))}}`;
};

beforeAll(async () => {
  stack = await startBrokerStack({ tableName: 'tokens-defences', env: { POWERTOOLS_LOG_LEVEL: 'DEBUG' } });
  Object.assign(process.env, stack.env);
});
afterAll(async () => stack?.stop());

describe('the double check after winning the lease', () => {
  it('serves the token another container wrote between its read and its lease take, without fetching again', async () => {
    const scopes = ['limitrail.accounts.read'];
    const before = upstream();
    let first: Answer | undefined;
    // Container B's DynamoDB client hands B its read of the item (a miss) only once container A has fetched the
    // token, written it and released its lease: B then takes the lease on an item that already holds a token.
    const dynamodb = new DynamoDBClient(awsClientConfig());
    let held = false;
    dynamodb.middlewareStack.add(
      (next, context) => async (args) => {
        const output = await next(args);
        if (!held && (context as { commandName?: string }).commandName === 'GetItemCommand') {
          held = true;
          first = (await coldCall({ scopes })).answer;
        }
        return output;
      },
      { step: 'initialize', name: 'holdTheFirstRead' },
    );
    const { answer, lines } = await coldCall({ scopes }, {}, { dynamodb });
    dynamodb.destroy();
    expect(held).toBe(true);
    expect(first?.token_type).toBe('Bearer');
    expect(answer.access_token).toBe(first?.access_token);
    expect(upstream() - before).toBe(1);
    // A's request fetched; B's, which these lines also hold, was served from the item its lease take returned.
    expect(lines.filter((l) => l.audit === 'issued').map((l) => l.source)).toEqual(['endpoint', 'table']);
  });
});

describe('every scope granted', () => {
  it('refuses a token the endpoint granted fewer scopes than asked, handing out and caching nothing', async () => {
    const scopes = ['limitrail.usage.read', 'limitrail.usage.write'];
    const narrowed = `narrowed-${randomUUID()}`;
    tokensSeen.add(narrowed);
    stack.sandbox.queueFaults({
      status: 200,
      headers: json,
      body: JSON.stringify({ access_token: narrowed, token_type: 'Bearer', expires_in: 3600, scope: scopes[0] }),
    });
    const items = await tokenItems();
    const before = upstream();
    const { answer } = await coldCall({ scopes });
    expect(answer).toMatchObject({ error: 'invalid_scope', status: 400 });
    expect(answer.error_description).toContain('less than requested: missing "limitrail.usage.write"');
    expect(JSON.stringify(answer)).not.toContain(narrowed);
    expect(upstream() - before).toBe(1);
    expect(await tokenItems()).toEqual(items);
    // Nothing of it stayed behind: the next request fetches the whole grant.
    const { answer: next } = await coldCall({ scopes });
    expect(next).toMatchObject({ token_type: 'Bearer', scope: scopes.join(' ') });
    expect(upstream() - before).toBe(2);
  });
});

describe("the token endpoint's answer is read up to MAX_RESPONSE_BYTES", () => {
  it('serves a token from an answer of exactly 64 KiB', async () => {
    const scopes = ['limitrail.runtime.read'];
    const exact = `exactly-64k-${randomUUID()}`;
    stack.sandbox.queueFaults({
      status: 200,
      headers: json,
      body: tokenAnswerOf(MAX_RESPONSE_BYTES, exact, scopes[0]!),
    });
    const { answer } = await coldCall({ scopes });
    expect(answer).toMatchObject({ access_token: exact, token_type: 'Bearer' });
  });

  it('refuses an answer one byte longer, handing out and caching nothing', async () => {
    const scopes = ['limitrail.runtime.read', 'limitrail.usage.read'];
    const over = `over-64k-${randomUUID()}`;
    stack.sandbox.queueFaults({
      status: 200,
      headers: json,
      body: tokenAnswerOf(MAX_RESPONSE_BYTES + 1, over, scopes.join(' ')),
    });
    const items = await tokenItems();
    const { answer } = await coldCall({ scopes });
    expect(answer).toMatchObject({ error: 'server_error', status: 502 });
    expect(answer.error_description).toContain(`more than ${MAX_RESPONSE_BYTES} bytes`);
    expect(JSON.stringify(answer)).not.toContain(over);
    expect(await tokenItems()).toEqual(items);
  });
});

describe('a sealed token is bound to its cache key', () => {
  it('does not serve an item copied whole onto the key of another token endpoint, where only the key differs', async () => {
    // Two tenants of one authorization server: the same client name, client id and scopes, another token URL.
    const scopes = ['limitrail.usage.write'];
    const tenantUrl = `${stack.sandbox.tokenUrl}?tenant=other`;
    const clients = JSON.parse(stack.env.BROKER_CLIENTS!) as Record<string, Record<string, unknown>>;
    const otherTenant = {
      BROKER_CLIENTS: JSON.stringify({ limitrail: { ...clients.limitrail, tokenUrl: tenantUrl } }),
    };
    const { answer: original } = await coldCall({ scopes });
    const source = keyOf(stack.sandbox.tokenUrl, scopes);
    const target = keyOf(tenantUrl, scopes);
    const { Item: item } = await stack.dynamodb.send(
      new GetItemCommand({ TableName: stack.tableName, Key: { [TABLE_PARTITION_KEY]: { S: source } } }),
    );
    await stack.dynamodb.send(
      new PutItemCommand({ TableName: stack.tableName, Item: { ...item!, [TABLE_PARTITION_KEY]: { S: target } } }),
    );
    const before = upstream();
    const { answer, lines } = await coldCall({ scopes }, otherTenant);
    expect(answer.token_type).toBe('Bearer');
    expect(answer.access_token).not.toBe(original.access_token);
    expect(upstream() - before).toBe(1);
    expect(lines).toContainEqual(
      expect.objectContaining({
        message: 'cached item unusable, treated as a miss',
        reason: expect.stringMatching(/^decrypt_failed/),
      }),
    );
    // The tenant's own token replaced the copy: its next cold container is a table hit.
    expect((await coldCall({ scopes }, otherTenant)).answer.access_token).toBe(answer.access_token);
    expect(upstream() - before).toBe(1);
  });
});

describe('logs of the whole run, at DEBUG', () => {
  it('hold no secret or token the token endpoint echoes back in free text, in its body or its headers', async () => {
    const secret = stack.sandbox.clients[0]!.clientSecret;
    const handedOut = [...tokensSeen].find((t) => t.split('.').length === 3)!; // a token the sandbox issued (a JWT)
    const echo = `client_secret=${secret} access_token=${handedOut}`;
    const html = { 'content-type': 'text/html', 'www-authenticate': `Basic realm="${echo}"` };
    const page = { status: 503, body: `<html>${echo}</html>`, headers: html };
    stack.sandbox.queueFaults(
      { status: 400, headers: json, body: JSON.stringify({ error: 'invalid_request', error_description: echo }) },
      page,
      page,
      page,
    );
    const scopes = ['limitrail.accounts.read', 'limitrail.usage.write'];
    const refused = await coldCall({ scopes });
    expect(refused.answer).toMatchObject({ error: 'server_error' });
    const unavailable = await coldCall({ scopes });
    expect(unavailable.answer).toMatchObject({ error: 'temporarily_unavailable' });
    for (const { answer } of [refused, unavailable]) {
      expect(JSON.stringify(answer)).not.toContain(secret);
      expect(JSON.stringify(answer)).not.toContain(handedOut);
    }
  });

  it('contain neither the client secret nor any token answered or handed out, and redact every credential-named field', () => {
    expect(tokensSeen.size).toBeGreaterThan(5);
    expect(logLines.length).toBeGreaterThan(20);
    const all = logLines.join('\n');
    expect(all).not.toContain(stack.sandbox.clients[0]!.clientSecret);
    for (const token of tokensSeen) {
      expect(all).not.toContain(token);
      if (token.split('.').length === 3) expect(all).not.toContain(token.split('.')[2]!); // not even a signature
    }
    // The broker logs no credential-named field (ids, fingerprints and outcomes only); should one ever appear, the
    // logger's replacer must have redacted it.
    const credentialValues: unknown[] = [];
    const collect = (value: unknown): void => {
      if (value === null || typeof value !== 'object') return;
      for (const [key, inner] of Object.entries(value)) {
        if (isCredentialField(key)) credentialValues.push(inner);
        else collect(inner);
      }
    };
    for (const line of logLines) collect(JSON.parse(line));
    expect(credentialValues.every((v) => v === REDACTED)).toBe(true);
  });
});
