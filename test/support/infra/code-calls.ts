/**
 * The AWS calls each function's code makes, recorded from the SDK commands it sends, in process, against moto_server
 * and the LimitRail sandbox (broker-stack.ts), each function through its own recording clients:
 *   - the token function, through real token requests: a cold miss (lease, secret, new data key, write), a cold
 *     table hit (unwrapping the data key), a request during a secret rotation the endpoint has not activated yet
 *     (AWSPREVIOUS), and a cold miss of a private_key_jwt client (its signing key's public key, a signature);
 *   - the prewarm function, through its handler (functions/lib/handlers/prewarm-handler.ts): a cold run that finds one set
 *     fresh in the table and one missing (consistent read, lease, secret, new data key, write) and a private_key_jwt
 *     client's set (public key, signature), the same container again (all fresh), and a new container during that
 *     rotation with a missing set (AWSPREVIOUS).
 * Each call becomes its IAM action, the deployed resource it names (`BrokerIam`, by the configuration it came
 * from: the table, the secret, the key) and the request context its parameters carry.
 */

import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { PutSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { InitializeMiddleware, MetadataBearer, MiddlewareStack } from '@smithy/types';
import { createPrewarmHandler, type PrewarmSummary } from '../../../functions/lib/handlers/prewarm-handler';
import { createRuntime, loggerFromEnv, type RuntimeOverrides } from '../../../functions/lib/runtime';
import { captureLogLines } from '../log-capture';
import { inProcessContainer, REGION, SECRET_ID, startBrokerStack } from '../stacks/broker-stack';
import { ensureKeyClient } from '../stacks/key-client';
import type { BrokerIam } from './iam-model';
import { type CallsByFunction, type CodeCall, type Context, kmsContext } from './iam-table';

export interface SentCommand {
  service: 'dynamodb' | 'secretsmanager' | 'kms';
  command: string;
  input: Record<string, unknown>;
}

/** Adds a middleware that records every command the client sends, before it is sent. */
export const recording = <C extends { middlewareStack: { add: MiddlewareStack<object, MetadataBearer>['add'] } }>(
  client: C,
  service: SentCommand['service'],
  sent: SentCommand[],
): C => {
  const record: InitializeMiddleware<object, MetadataBearer> = (next, context) => async (args) => {
    sent.push({
      service,
      command: String(context.commandName).replace(/Command$/, ''),
      input: args.input as Record<string, unknown>,
    });
    return next(args);
  };
  client.middlewareStack.add(record, { step: 'initialize', name: 'recordBrokerCalls' });
  return client;
};

/** Each function's commands, as sent, by function name: what `recordCodeCalls` turns into calls. */
export type SentByFunction = Record<'token' | 'prewarm', SentCommand[]>;

/** Runs the token requests and the prewarm runs; returns each function's commands, in the order sent. */
export const recordSentCommands = async (
  tableName: string,
): Promise<{ sent: SentByFunction; tableName: string; kmsKeyId: string; signingKeyIds: string[] }> => {
  // The table is named as the stack would name it: the encryption context carries the table's name.
  const stack = await startBrokerStack({ tableName });
  const sent: SentByFunction = { token: [], prewarm: [] };
  const config = {
    endpoint: stack.moto.endpoint,
    region: REGION,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  };
  const made: { destroy(): void }[] = [];
  const clientsOf = (fn: keyof SentByFunction): RuntimeOverrides => {
    const clients = {
      dynamodb: recording(new DynamoDBClient(config), 'dynamodb', sent[fn]),
      secretsManager: recording(new SecretsManagerClient(config), 'secretsmanager', sent[fn]),
      kms: recording(new KMSClient(config), 'kms', sent[fn]),
    };
    made.push(...Object.values(clients));
    return clients;
  };
  // A private_key_jwt client, its key in moto's KMS, its JWK Set registered with the sandbox.
  const { keyArn: signingKeyArn, config: partner } = await ensureKeyClient({
    endpoint: stack.moto.endpoint,
    region: REGION,
    sandbox: stack.sandbox,
    clientId: 'lr_partner_jwt',
    alias: 'alias/upstream-signing',
  });
  const client = stack.sandbox.clients[0]!;
  const limitrail = (JSON.parse(stack.env.BROKER_CLIENTS!) as Record<string, Record<string, unknown>>).limitrail!;
  const env = { ...stack.env, BROKER_CLIENTS: JSON.stringify({ limitrail, partner }) };
  const tokenClients = clientsOf('token');
  const prewarmClients = clientsOf('prewarm');
  const logs: string[] = [];
  const request = async (scopes: string[], clientName = 'limitrail') => {
    const answer = await inProcessContainer(env, logs, tokenClients)({ client: clientName, scopes });
    if (answer.token_type !== 'Bearer') throw new Error(`token request failed: ${JSON.stringify(answer)}`);
  };
  /** A new prewarm container (its own runtime and caches), keeping these sets fresh; its handler as Lambda calls it. */
  const prewarmContainer = (sets: string[][], partnerSets: string[][] = []) => {
    const env = {
      ...stack.env,
      BROKER_CLIENTS: JSON.stringify({
        limitrail: { ...limitrail, prewarm: sets },
        partner: { ...partner, prewarm: partnerSets },
      }),
    };
    captureLogLines(logs);
    const handler = createPrewarmHandler(
      () => createRuntime(env, prewarmClients),
      () => loggerFromEnv(env),
    );
    return async (expected: Partial<Record<'refreshed' | 'fresh', number>>) => {
      const summary = (await handler(
        {},
        { awsRequestId: 'prewarm-test', getRemainingTimeInMillis: () => 15_000 },
      )) as PrewarmSummary;
      if (
        summary.failed !== 0 ||
        Object.entries(expected).some(([k, n]) => summary[k as keyof typeof expected] !== n)
      ) {
        throw new Error(`prewarm run: expected ${JSON.stringify(expected)}, got ${JSON.stringify(summary)}`);
      }
    };
  };
  try {
    await request(['limitrail.usage.write']); // cold miss
    await request(['limitrail.usage.write']); // another cold container: a table hit
    await request(['limitrail.usage.write'], 'partner'); // private_key_jwt: the key's public half, a signature
    const prewarm = prewarmContainer(
      [['limitrail.usage.write'], ['limitrail.runtime.read']],
      [['limitrail.usage.read']],
    );
    await prewarm({ refreshed: 2, fresh: 1 }); // one set the token function wrote, one missing, the partner's
    await prewarm({ refreshed: 0, fresh: 3 }); // the same container: all fresh
    await stack.secretsManager.send(
      new PutSecretValueCommand({
        SecretId: SECRET_ID,
        SecretString: JSON.stringify({ client_id: client.clientId, client_secret: 'rotated-not-active-yet' }),
      }),
    );
    await request(['limitrail.usage.read']); // the endpoint still accepts only the previous secret
    await prewarmContainer([['limitrail.accounts.read']])({ refreshed: 1 }); // so does the prewarm function's fetch
    // Sign names the key as GetPublicKey answered it: moto answers the bare key id.
    const signingKeyIds = [signingKeyArn, signingKeyArn.split('/').pop()!];
    return { sent, tableName: stack.tableName, kmsKeyId: stack.kmsKeyId, signingKeyIds };
  } finally {
    for (const c of made) c.destroy();
    await stack.stop();
  }
};

const describeDynamoDb = (command: string, input: Record<string, unknown>): string => {
  const how = [
    input.ConsistentRead === true ? 'consistent read' : '',
    typeof input.ReturnValues === 'string' ? `ReturnValues ${input.ReturnValues}` : '',
  ]
    .filter(Boolean)
    .join(', ');
  return `${command} on the token table${how ? ` (${how})` : ''}`;
};

/** Each distinct call (action and context) of one function's commands, once. */
const callsOf = (
  iam: BrokerIam,
  sent: SentCommand[],
  recorded: { tableName: string; kmsKeyId: string; signingKeyIds: string[] },
): CodeCall[] => {
  const calls = new Map<string, CodeCall>();
  for (const { service, command, input } of sent) {
    const action = `${service}:${command}`;
    let resource: string;
    let context: Context = {};
    let what: string;
    if (service === 'dynamodb') {
      if (input.TableName !== recorded.tableName)
        throw new Error(`${action} on table ${String(input.TableName)}, not the configured one`);
      resource = iam.tableArn;
      // The request's own condition keys (dynamodb:ReturnValues), as IAM would see them.
      if (typeof input.ReturnValues === 'string') context = { 'dynamodb:ReturnValues': input.ReturnValues };
      what = describeDynamoDb(command, input);
    } else if (service === 'secretsmanager') {
      if (input.SecretId !== SECRET_ID)
        throw new Error(`${action} of secret ${String(input.SecretId)}, not the configured one`);
      resource = iam.secretArn;
      context = { 'secretsmanager:VersionStage': String(input.VersionStage) };
      what = `${command} of the configured secret, ${String(input.VersionStage)}`;
    } else if (input.KeyId === recorded.kmsKeyId) {
      resource = iam.keyArn;
      context = kmsContext(input.EncryptionContext as Record<string, string>);
      what = `${command} on the token key with the code's encryption context`;
    } else {
      if (!recorded.signingKeyIds.includes(String(input.KeyId)))
        throw new Error(`${action} with key ${String(input.KeyId)}, neither the token key nor the signing key`);
      if (!iam.signingKeyArn) throw new Error(`${action} with the signing key, but the template creates none`);
      resource = iam.signingKeyArn;
      if (command === 'Sign') {
        context = {
          'kms:SigningAlgorithm': String(input.SigningAlgorithm),
          'kms:MessageType': String(input.MessageType),
        };
        what = `Sign with the upstream signing key (${String(input.SigningAlgorithm)}, ${String(input.MessageType)})`;
      } else what = `${command} of the upstream signing key`;
    }
    const key = `${action} ${JSON.stringify(context)} ${what}`;
    if (!calls.has(key)) calls.set(key, { what, action, resource, context });
  }
  return [...calls.values()];
};

/** Each function's distinct AWS calls, by function name (token, prewarm). */
export const recordCodeCalls = async (iam: BrokerIam): Promise<CallsByFunction> => {
  const { sent, ...recorded } = await recordSentCommands(iam.tableName);
  return { token: callsOf(iam, sent.token, recorded), prewarm: callsOf(iam, sent.prewarm, recorded) };
};
