/**
 * DynamoDB condition expressions, evaluated in memory: exactly the subset the token table's conditions
 * (functions/lib/cache/table/conditions.ts) are written in, following the DynamoDB grammar
 * (docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.OperatorsAndFunctions.html):
 *
 *   condition ::= operand comparator operand | function | condition AND condition | condition OR condition
 *               | NOT condition | ( condition )
 *   comparator ::= = | <> | < | <= | > | >=
 *   function ::= attribute_exists(path) | attribute_not_exists(path) | attribute_type(path, :type)
 *
 * with DynamoDB's precedence (comparisons and functions, then NOT, then AND, then OR), top-level attribute names
 * (plain or `#name` placeholders) and `:value` placeholders. A comparison with a missing attribute, or of two values
 * of different types, is false (`<>`: true, as "not equal"); numbers compare as numbers, strings and binaries by
 * their bytes. What DynamoDB refuses as a ValidationException (a syntax error, a placeholder that is not defined or
 * not used, anything outside the subset) throws ExpressionError.
 */
import type { AttributeValue } from '@aws-sdk/client-dynamodb';

export class ExpressionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ValidationException';
  }
}

export type Item = Record<string, AttributeValue>;

export interface ExpressionInput {
  expression: string;
  names?: Record<string, string> | undefined;
  values?: Record<string, AttributeValue> | undefined;
}

type Token = { kind: 'name' | 'value' | 'word' | 'op' | 'punct'; text: string };

const TOKEN = /\s*(?:(#[A-Za-z0-9_]+)|(:[A-Za-z0-9_]+)|([A-Za-z_][A-Za-z0-9_]*)|(<>|<=|>=|=|<|>)|([(),]))/y;

export const tokenize = (expression: string): Token[] => {
  const tokens: Token[] = [];
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < expression.length) {
    if (/^\s*$/.test(expression.slice(TOKEN.lastIndex))) break;
    const at = TOKEN.lastIndex;
    const m = TOKEN.exec(expression);
    if (!m) throw new ExpressionError(`Invalid expression: syntax error at ${at} in ${JSON.stringify(expression)}`);
    const [, name, value, word, op, punct] = m;
    if (name) tokens.push({ kind: 'name', text: name });
    else if (value) tokens.push({ kind: 'value', text: value });
    else if (word) tokens.push({ kind: 'word', text: word });
    else if (op) tokens.push({ kind: 'op', text: op });
    else tokens.push({ kind: 'punct', text: punct as string });
  }
  return tokens;
};

/** The `#name` and `:value` placeholders an expression uses (also of an update expression: same tokens). */
export const placeholdersOf = (expression: string): { names: Set<string>; values: Set<string> } => {
  const tokens = tokenize(expression);
  return {
    names: new Set(tokens.filter((t) => t.kind === 'name').map((t) => t.text)),
    values: new Set(tokens.filter((t) => t.kind === 'value').map((t) => t.text)),
  };
};

/** DynamoDB refuses a request that defines a placeholder none of its expressions use, or uses an undefined one. */
export const checkPlaceholders = (input: {
  expressions: string[];
  names?: Record<string, string> | undefined;
  values?: Record<string, AttributeValue> | undefined;
}): void => {
  const used = input.expressions.map(placeholdersOf);
  const usedNames = new Set(used.flatMap((u) => [...u.names]));
  const usedValues = new Set(used.flatMap((u) => [...u.values]));
  for (const [defined, uses, what] of [
    [Object.keys(input.names ?? {}), usedNames, 'ExpressionAttributeNames'],
    [Object.keys(input.values ?? {}), usedValues, 'ExpressionAttributeValues'],
  ] as const) {
    const unused = defined.filter((k) => !uses.has(k));
    if (unused.length > 0) throw new ExpressionError(`Value provided in ${what} unused in expressions: ${unused}`);
    const undefinedOnes = [...uses].filter((k) => !defined.includes(k));
    if (undefinedOnes.length > 0)
      throw new ExpressionError(
        `An expression attribute placeholder used in expression is not defined: ${undefinedOnes}`,
      );
  }
};

const KEYWORDS = new Set(['AND', 'OR', 'NOT', 'BETWEEN', 'IN']);
const FUNCTIONS = new Set(['attribute_exists', 'attribute_not_exists', 'attribute_type']);

/** The type descriptor of a value as DynamoDB names it (S, N, B, BOOL, NULL, SS, NS, BS, L, M). */
export const typeOf = (v: AttributeValue): string => {
  const set = Object.entries(v).filter(([, x]) => x !== undefined);
  if (set.length !== 1) throw new ExpressionError(`Supplied AttributeValue has ${set.length} types`);
  return (set[0] as [string, unknown])[0];
};

const bytesOf = (v: AttributeValue): Buffer =>
  v.S !== undefined ? Buffer.from(v.S, 'utf8') : Buffer.from(v.B as Uint8Array);

/** -1, 0, 1 for two values of one ordered type (N, S, B); undefined otherwise. */
const order = (a: AttributeValue, b: AttributeValue): number | undefined => {
  const type = typeOf(a);
  if (type !== typeOf(b)) return undefined;
  if (type === 'N') return Math.sign(Number(a.N) - Number(b.N));
  if (type === 'S' || type === 'B') return Buffer.compare(bytesOf(a), bytesOf(b));
  return undefined;
};

const equal = (a: AttributeValue, b: AttributeValue): boolean => {
  const type = typeOf(a);
  if (type !== typeOf(b)) return false;
  if (type === 'BOOL') return a.BOOL === b.BOOL;
  if (type === 'NULL') return true;
  const o = order(a, b);
  if (o === undefined) throw new ExpressionError(`equality of ${type} values is outside this evaluator's subset`);
  return o === 0;
};

const compare = (op: string, a: AttributeValue | undefined, b: AttributeValue | undefined): boolean => {
  if (op === '<>') return a === undefined || b === undefined || !equal(a, b);
  if (a === undefined || b === undefined) return false;
  if (op === '=') return equal(a, b);
  const o = order(a, b);
  if (o === undefined) return false;
  return op === '<' ? o < 0 : op === '<=' ? o <= 0 : op === '>' ? o > 0 : o >= 0;
};

/** Whether `item` (undefined: no item) satisfies the condition; throws ExpressionError where DynamoDB refuses. */
export const evaluateCondition = (input: ExpressionInput, item: Item | undefined): boolean => {
  const tokens = tokenize(input.expression);
  if (tokens.length === 0) throw new ExpressionError('Invalid ConditionExpression: the expression is empty');
  const names = input.names ?? {};
  const values = input.values ?? {};
  const attributes = item ?? {};
  let i = 0;
  const peek = () => tokens[i];
  const fail = (what: string): never => {
    throw new ExpressionError(
      `Invalid ConditionExpression: ${what} at token ${i} of ${JSON.stringify(input.expression)}`,
    );
  };
  const isWord = (t: Token | undefined, word: string) => t?.kind === 'word' && t.text.toUpperCase() === word;
  const expect = (text: string) => {
    if (peek()?.text !== text) fail(`expected ${text}`);
    i += 1;
  };
  /** A path: an attribute name (plain or placeholder). */
  const path = (): string => {
    const t = peek();
    i += 1;
    if (t?.kind === 'name') {
      const name = names[t.text];
      if (name === undefined) throw new ExpressionError(`An expression attribute name used is not defined: ${t.text}`);
      return name;
    }
    if (t?.kind === 'word' && !KEYWORDS.has(t.text.toUpperCase()) && !FUNCTIONS.has(t.text)) return t.text;
    return fail('expected an attribute name');
  };
  const operand = (): AttributeValue | undefined => {
    const t = peek();
    if (t?.kind === 'value') {
      i += 1;
      const v = values[t.text];
      if (v === undefined) throw new ExpressionError(`An expression attribute value used is not defined: ${t.text}`);
      return v;
    }
    return attributes[path()];
  };
  const primary = (): boolean => {
    const t = peek();
    if (t?.text === '(') {
      i += 1;
      const inner = or();
      expect(')');
      return inner;
    }
    if (t?.kind === 'word' && FUNCTIONS.has(t.text)) {
      i += 1;
      expect('(');
      const name = path();
      let result: boolean;
      if (t.text === 'attribute_type') {
        expect(',');
        const type = operand();
        if (type?.S === undefined) fail('attribute_type needs a string value');
        const value = attributes[name];
        result = value !== undefined && typeOf(value) === type?.S;
      } else {
        result = (attributes[name] !== undefined) === (t.text === 'attribute_exists');
      }
      expect(')');
      return result;
    }
    const left = operand();
    const op = peek();
    if (op?.kind !== 'op') return fail('expected a comparator');
    i += 1;
    return compare(op.text, left, operand());
  };
  const not = (): boolean => {
    if (isWord(peek(), 'NOT')) {
      i += 1;
      return !not();
    }
    return primary();
  };
  const and = (): boolean => {
    let result = not();
    while (isWord(peek(), 'AND')) {
      i += 1;
      result = not() && result;
    }
    return result;
  };
  const or = (): boolean => {
    let result = and();
    while (isWord(peek(), 'OR')) {
      i += 1;
      result = and() || result;
    }
    return result;
  };
  const result = or();
  if (i !== tokens.length) fail('unexpected trailing tokens');
  return result;
};
