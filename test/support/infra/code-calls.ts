/**
 * The AWS calls each function's code makes, recorded from the SDK commands it sends, in process, against moto_server
 * and the LimitRail sandbox (broker-stack.ts), each function through its own recording clients:
 *   - the token function, through real token requests: a cold miss (lease, secret, new data key, write), a cold
 *     table hit (unwrapping the data key) and a request during a secret rotation the endpoint has not activated yet
 *     (AWSPREVIOUS); when the stage reads its callers from an SSM parameter, a Function URL call whose caller it
 *     authorizes from that parameter (created in moto as the stack creates it); a cold miss of a private_key_jwt
 *     client (its signing key's public key, a signature);
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
import { SSMClient } from '@aws-sdk/client-ssm';
import type { InitializeMiddleware, MetadataBearer, MiddlewareStack } from '@smithy/types';

import { createPrewarmHandler, type PrewarmCounts } from '../../../functions/lib/handlers/prewarm-handler';
import { createRuntime, loggerFromEnv, type RuntimeOverrides } from '../../../functions/lib/runtime';
import { roleSession, urlEvent } from '../fakes/url-event';
import { captureLogLines } from '../log-capture';
import { inProcessContainer, REGION, SECRET_ID, startBrokerStack } from '../stacks/broker-stack';
import { putCallersParameter } from '../stacks/callers-parameter';
import { ensureKeyClient } from '../stacks/key-client';
import type { BrokerIam } from './iam-model';
import { type CallsByFunction, type CodeCall, type Context, kmsContext } from './iam-table';

export interface SentCommand {
  service: 'dynamodb' | 'secretsmanager' | 'kms' | 'ssm';
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

/** A Function URL caller, granted in the callers parameter: the token function reads it to authorize the call. */
const URL_CALLER = { account: '111111111111', role: 'reporting' };

/**
 * Runs the token requests and the prewarm runs; returns each function's commands, in the order sent. With
 * `callersParameter` (BROKER_CALLERS_PARAMETER), the token function reads its callers from it.
 */
export const recordSentCommands = async (
  tableName: string,
  callersParameter?: string,
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
      ssm: recording(new SSMClient(config), 'ssm', sent[fn]),
    };
    made.push(...Object.values(clients));
    return clients;
  };
  const tokenClients = clientsOf('token');
  const prewarmClients = clientsOf('prewarm');
  const logs: string[] = [];
  const client = stack.sandbox.clients[0]!;
  // A private_key_jwt client, its key in moto's KMS, its JWK Set registered with the sandbox.
  const { keyArn: signingKeyArn, config: partner } = await ensureKeyClient({
    endpoint: stack.moto.endpoint,
    region: REGION,
    sandbox: stack.sandbox,
    clientId: 'lr_partner_jwt',
    alias: 'alias/upstream-signing',
  });
  const limitrail = (JSON.parse(stack.env.BROKER_CLIENTS!) as Record<string, Record<string, unknown>>).limitrail!;
  const tokenEnv: Record<string, string> = { ...stack.env, BROKER_CLIENTS: JSON.stringify({ limitrail, partner }) };
  if (callersParameter) {
    const principal = `arn:aws:iam::${URL_CALLER.account}:role/${URL_CALLER.role}`;
    await putCallersParameter(
      { endpoint: stack.moto.endpoint, region: REGION, name: callersParameter },
      { callers: [{ principal, client: 'limitrail', scopes: client.scopes }], revoked: [] },
    );
    tokenEnv.BROKER_CALLERS_PARAMETER = callersParameter;
  }
  const request = async (scopes: string[], { viaUrl = false, client = 'limitrail' } = {}) => {
    const container = inProcessContainer(tokenEnv, logs, tokenClients);
    const iam = roleSession(URL_CALLER.role, URL_CALLER.account);
    const event = { client, scopes };
    const answer = viaUrl ? await container(urlEvent(event, { iam })) : await container(event);
    const body = typeof answer.body === 'string' ? (JSON.parse(answer.body) as Record<string, unknown>) : answer;
    if (body.token_type !== 'Bearer') throw new Error(`token request failed: ${JSON.stringify(body)}`);
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
      const counts = (await handler(
        {},
        { awsRequestId: 'prewarm-test', getRemainingTimeInMillis: () => 15_000 },
      )) as PrewarmCounts;
      if (counts.failed !== 0 || Object.entries(expected).some(([k, n]) => counts[k as keyof typeof expected] !== n)) {
        // The answer holds counts only; what each set did is in the run's log line.
        const run = logs.filter((l) => l.includes('"message":"prewarm run"')).at(-1);
        throw new Error(`prewarm run: expected ${JSON.stringify(expected)}, got ${JSON.stringify(counts)}; ${run}`);
      }
    };
  };
  try {
    await request(['limitrail.usage.write']); // cold miss
    await request(['limitrail.usage.write']); // another cold container: a table hit
    if (callersParameter) await request(['limitrail.usage.write'], { viaUrl: true }); // granted in the parameter
    await request(['limitrail.usage.write'], { client: 'partner' }); // private_key_jwt: the public key, a signature
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
    } else if (service === 'ssm') {
      if (!iam.callersParameter || input.Name !== iam.callersParameter.name)
        throw new Error(`${action} of parameter ${String(input.Name)}, not the configured callers parameter`);
      resource = iam.callersParameter.arn;
      what = `${command} of the callers parameter`;
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
  const { sent, ...recorded } = await recordSentCommands(iam.tableName, iam.callersParameter?.name);
  return { token: callsOf(iam, sent.token, recorded), prewarm: callsOf(iam, sent.prewarm, recorded) };
};
