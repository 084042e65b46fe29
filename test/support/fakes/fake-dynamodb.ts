/**
 * DynamoDB at the I/O edge, in memory, for unit tests of DynamoTokenTable: GetItem and UpdateItem on one table keyed by
 * TABLE_PARTITION_KEY, with the requests' condition expressions evaluated by DynamoDB's rules
 * (condition-expression.ts) and their update expressions (SET with `if_not_exists`, REMOVE) applied to the item.
 * What DynamoDB refuses (a wrong key or table, a malformed expression, a placeholder undefined or unused) is thrown
 * as its ValidationException; a condition that does not hold as ConditionalCheckFailedException, with the item when
 * ReturnValuesOnConditionCheckFailure is ALL_OLD. The real thing is moto, in test/integration.
 */
import type { AttributeValue, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetItemCommand, UpdateItemCommand } from '@aws-sdk/client-dynamodb';
import { TABLE_PARTITION_KEY } from '../../../functions/lib/cache/table/table-schema';
import { checkPlaceholders, ExpressionError, evaluateCondition, type Item, tokenize } from './condition-expression';

type Action = { set: string; value: AttributeValue; ifNotExists?: string } | { remove: string };

/** The actions of an update expression: `SET path = :v | path = if_not_exists(path, :v), ...` and `REMOVE path, ...`. */
const parseUpdate = (
  expression: string,
  names: Record<string, string>,
  values: Record<string, AttributeValue>,
): Action[] => {
  const tokens = tokenize(expression);
  let i = 0;
  const fail = (what: string): never => {
    throw new ExpressionError(`Invalid UpdateExpression: ${what} in ${JSON.stringify(expression)}`);
  };
  const next = () => tokens[i++] ?? fail('unexpected end');
  const path = (): string => {
    const t = next();
    if (t.kind === 'name') return names[t.text] ?? fail(`undefined name ${t.text}`);
    if (t.kind === 'word') return t.text;
    return fail('expected an attribute name');
  };
  const value = (): AttributeValue => {
    const t = next();
    return t.kind === 'value' ? (values[t.text] ?? fail(`undefined value ${t.text}`)) : fail('expected a :value');
  };
  const expectText = (text: string) => {
    if (next().text !== text) fail(`expected ${text}`);
  };
  const actions: Action[] = [];
  if (tokens.length === 0) fail('the expression is empty');
  while (i < tokens.length) {
    const clause = next().text.toUpperCase();
    if (clause !== 'SET' && clause !== 'REMOVE') fail(`unknown clause ${clause}`);
    do {
      if (clause === 'REMOVE') {
        actions.push({ remove: path() });
        continue;
      }
      const set = path();
      expectText('=');
      if (tokens[i]?.text === 'if_not_exists') {
        i += 1;
        expectText('(');
        const ifNotExists = path();
        expectText(',');
        const v = value();
        expectText(')');
        actions.push({ set, value: v, ifNotExists });
      } else actions.push({ set, value: value() });
    } while (tokens[i]?.text === ',' && ++i);
  }
  const paths = actions.map((a) => ('set' in a ? a.set : a.remove));
  if (new Set(paths).size !== paths.length) fail('two document paths overlap');
  return actions;
};

const validation = (message: string) => new ExpressionError(message);

export class FakeDynamoDB {
  readonly items = new Map<string, Item>();
  /** Every request, in order. */
  readonly requests: { command: 'GetItem' | 'UpdateItem'; input: Record<string, unknown> }[] = [];
  /** When set, every request (or every request of one kind) fails with the error: an outage, throttling. */
  failure: { error: Error; only?: 'GetItem' | 'UpdateItem' } | undefined;
  /** False: a refused write does not return the item (ReturnValuesOnConditionCheckFailure not honoured). */
  returnsOldItem = true;

  constructor(readonly tableName: string) {}

  get client(): DynamoDBClient {
    return { send: (command: unknown) => this.send(command) } as unknown as DynamoDBClient;
  }

  async send(command: unknown): Promise<unknown> {
    if (command instanceof GetItemCommand) {
      this.requests.push({ command: 'GetItem', input: { ...command.input } });
      this.#failIf('GetItem');
      const item = this.items.get(this.#keyOf(command.input));
      return { Item: item && structuredClone(item) };
    }
    if (command instanceof UpdateItemCommand) {
      this.requests.push({ command: 'UpdateItem', input: { ...command.input } });
      this.#failIf('UpdateItem');
      return this.#update(command.input);
    }
    throw new Error(`the fake DynamoDB does not do ${(command as object).constructor.name}`);
  }

  #failIf(command: 'GetItem' | 'UpdateItem'): void {
    if (this.failure && (this.failure.only ?? command) === command) throw this.failure.error;
  }

  #keyOf(input: { TableName?: string | undefined; Key?: Record<string, AttributeValue> | undefined }): string {
    if (input.TableName !== this.tableName)
      throw Object.assign(new Error('Requested resource not found'), { name: 'ResourceNotFoundException' });
    const key = input.Key ?? {};
    const value = key[TABLE_PARTITION_KEY]?.S;
    if (Object.keys(key).length !== 1 || value === undefined)
      throw validation('The provided key element does not match the schema');
    return value;
  }

  #update(input: UpdateItemCommand['input']): unknown {
    const key = this.#keyOf(input);
    const names = input.ExpressionAttributeNames ?? {};
    const values = input.ExpressionAttributeValues ?? {};
    const update = input.UpdateExpression ?? '';
    checkPlaceholders({
      expressions: [update, ...(input.ConditionExpression === undefined ? [] : [input.ConditionExpression])],
      names,
      values,
    });
    const actions = parseUpdate(update, names, values);
    const old = this.items.get(key);
    if (
      input.ConditionExpression !== undefined &&
      !evaluateCondition({ expression: input.ConditionExpression, names, values }, old)
    ) {
      const withItem = this.returnsOldItem && input.ReturnValuesOnConditionCheckFailure === 'ALL_OLD' && old;
      throw Object.assign(new Error('The conditional request failed'), {
        name: 'ConditionalCheckFailedException',
        $metadata: { httpStatusCode: 400 },
        ...(withItem ? { Item: structuredClone(old) } : {}),
      });
    }
    const item: Item = structuredClone(old ?? { [TABLE_PARTITION_KEY]: { S: key } });
    for (const action of actions) {
      if ('remove' in action) delete item[action.remove];
      else if (action.ifNotExists !== undefined && old?.[action.ifNotExists] !== undefined)
        item[action.set] = structuredClone(old[action.ifNotExists] as AttributeValue);
      else item[action.set] = structuredClone(action.value);
    }
    if (item[TABLE_PARTITION_KEY]?.S !== key) throw validation('the key cannot be updated');
    this.items.set(key, item);
    return input.ReturnValues === 'ALL_NEW' ? { Attributes: structuredClone(item) } : {};
  }
}
