/**
 * The AWS calls the functions' code makes, recorded from the SDK commands it sends during real token requests
 * (moto_server and the LimitRail sandbox, broker-stack.ts): a cold miss (lease, secret, new data key, write), a
 * cold table hit (unwrapping the data key) and a request during a secret rotation the endpoint has not activated
 * yet (AWSPREVIOUS). Each call becomes its IAM action, the deployed resource it names (`BrokerIam`, by the
 * configuration it came from: the table, the secret, the key) and the request context its parameters carry.
 */
import { PutSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import type { InitializeMiddleware, MetadataBearer, MiddlewareStack } from '@smithy/types';

import { REGION, SECRET_ID, inProcessContainer, startBrokerStack } from './broker-stack';
import type { BrokerIam } from './iam-model';
import { type CodeCall, type Context, kmsContext } from './iam-table';

interface SentCommand {
  service: 'dynamodb' | 'secretsmanager' | 'kms';
  command: string;
  input: Record<string, unknown>;
}

/** Adds a middleware that records every command the client sends, before it is sent. */
const recording = <C extends { middlewareStack: { add: MiddlewareStack<object, MetadataBearer>['add'] } }>(
  client: C,
  service: SentCommand['service'],
  sent: SentCommand[],
): C => {
  const record: InitializeMiddleware<object, MetadataBearer> = (next, context) => async (args) => {
    sent.push({ service, command: String(context.commandName).replace(/Command$/, ''), input: args.input as Record<string, unknown> });
    return next(args);
  };
  client.middlewareStack.add(record, { step: 'initialize', name: 'recordBrokerCalls' });
  return client;
};

/** Runs the token requests and returns each distinct call (action and context) once. */
export const recordCodeCalls = async (iam: BrokerIam): Promise<CodeCall[]> => {
  // The table is named as the stack would name it: the encryption context carries the table's name.
  const stack = await startBrokerStack({ tableName: iam.tableName });
  const sent: SentCommand[] = [];
  const config = { endpoint: stack.moto.endpoint, region: REGION, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } };
  const clients = {
    dynamodb: recording(new DynamoDBClient(config), 'dynamodb', sent),
    secretsManager: recording(new SecretsManagerClient(config), 'secretsmanager', sent),
    kms: recording(new KMSClient(config), 'kms', sent),
  };
  const logs: string[] = [];
  const request = async (scopes: string[]) => {
    const answer = await inProcessContainer(stack.env, logs, clients)({ scopes });
    if (answer.token_type !== 'Bearer') throw new Error(`token request failed: ${JSON.stringify(answer)}`);
  };
  try {
    await request(['limitrail.usage.write']); // cold miss
    await request(['limitrail.usage.write']); // another cold container: a table hit
    const client = stack.sandbox.clients[0]!;
    await stack.secretsManager.send(
      new PutSecretValueCommand({ SecretId: SECRET_ID, SecretString: JSON.stringify({ client_id: client.clientId, client_secret: 'rotated-not-active-yet' }) }),
    );
    await request(['limitrail.usage.read']); // the endpoint still accepts only the previous secret
  } finally {
    for (const c of Object.values(clients)) c.destroy();
    await stack.stop();
  }

  const calls = new Map<string, CodeCall>();
  for (const { service, command, input } of sent) {
    const action = `${service}:${command}`;
    let resource: string;
    let context: Context = {};
    let what = action;
    if (service === 'dynamodb') {
      if (input.TableName !== stack.tableName) throw new Error(`${action} on table ${String(input.TableName)}, not the configured one`);
      resource = iam.tableArn;
      what = `${command} on the token table`;
    } else if (service === 'secretsmanager') {
      if (input.SecretId !== SECRET_ID) throw new Error(`${action} of secret ${String(input.SecretId)}, not the configured one`);
      resource = iam.secretArn;
      context = { 'secretsmanager:VersionStage': String(input.VersionStage) };
      what = `${command} of the configured secret, ${String(input.VersionStage)}`;
    } else {
      if (input.KeyId !== stack.kmsKeyId) throw new Error(`${action} with key ${String(input.KeyId)}, not the configured one`);
      resource = iam.keyArn;
      context = kmsContext(input.EncryptionContext as Record<string, string>);
      what = `${command} on the token key with the code's encryption context`;
    }
    calls.set(`${action} ${JSON.stringify(context)}`, { what, action, resource, context });
  }
  return [...calls.values()];
};
