import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Hash } from '@smithy/core/serde';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity } from '@smithy/types';
import { urlEvent } from '../fakes/url-event';
import { listenOnLoopback } from '../process/listen';
import { type BrokerStack, REGION, SECRET_ID, startBrokerStack } from './broker-stack';
import { freePort } from './moto';
import { localAwsEnv, type Offline, startOffline, stopProcess } from './offline';
import { STS_ACCOUNT, type StsStack, startStsStack } from './sts-stack';

/**
 * The local stack the caller packages are tested against, as a service meets the broker: the built bundle
 * (dist/token/handler.js) behind serverless-offline's real Lambda Invoke API (osls, stage `local`, CALLER_AUTH=grants),
 * moto_server for DynamoDB, Secrets Manager and KMS, a second moto_server for STS that checks every proof's signature
 * (test/support/stacks/sts-stack.ts), and the LimitRail sandbox. Counted where they arrive:
 * - broker invocations, by a proxy in front of the Invoke API (the clients' endpoint); it can also answer the next
 *   invocations as Lambda function errors, without running the function;
 * - upstream token requests, at the sandbox.
 * A Function URL emulator checks the SigV4 signature (service `lambda`) of each call with the caller's session
 * credentials, then invokes the function with the URL event AWS would build, naming the signer as AWS does.
 * Everything binds to 127.0.0.1; stop() ends every process by PID.
 */
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const FUNCTION_NAME = 'limitrail-token-broker-local-token';
export const CALLER_REGION = REGION;
/**
 * Roles in the STS stack; `billing`, `billing-batch` and `billing-cron` are granted these scopes of the `limitrail`
 * client, `nogrant` nothing. Forced refreshes are budgeted per caller and client (functions/lib/cache/lease/
 * force-budget.ts), so tests that force refreshes of several scope sets within one interval sign as different roles.
 */
export const GRANTED_SCOPES = ['limitrail.usage.read', 'limitrail.usage.write', 'limitrail.runtime.read'];
export const UNGRANTED_SCOPE = 'limitrail.accounts.read';
export const ROLES = ['billing', 'billing-batch', 'billing-cron', 'nogrant'] as const;
const GRANTED_ROLES: readonly Role[] = ['billing', 'billing-batch', 'billing-cron'];
export type Role = (typeof ROLES)[number];

export interface Invocations {
  total: number;
  /** Requests with forceRefresh (after a 401). */
  forced: number;
  /** Function URL events (through the emulator). */
  url: number;
}

export interface CallerStack {
  broker: BrokerStack;
  sts: StsStack;
  /** The Lambda API the clients call: the counting proxy in front of serverless-offline. */
  lambdaEndpoint: string;
  /** The Function URL emulator. */
  functionUrl: string;
  credentials(role: Role): AwsCredentialIdentity;
  /** The ARN the broker proves for the role's session. */
  sessionArn(role: Role): string;
  invocations(): Invocations;
  /** Token requests that reached the LimitRail sandbox. */
  upstream(): number;
  /** The next `count` invocations are answered as Lambda function errors (X-Amz-Function-Error: Unhandled). */
  queueFunctionErrors(count: number): void;
  /** Every line the function logged. */
  logs(): string[];
  stop(): Promise<void>;
}

const readBody = (req: IncomingMessage): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });

/** The token request inside an invocation: the event itself, or a URL event's JSON body. */
const tokenRequestOf = (payload: Buffer): { request: Record<string, unknown>; viaUrl: boolean } => {
  try {
    const event = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
    return typeof event.body === 'string'
      ? { request: JSON.parse(event.body) as Record<string, unknown>, viaUrl: true }
      : { request: event, viaUrl: false };
  } catch {
    return { request: {}, viaUrl: false };
  }
};

/** Counts invocations and relays them to serverless-offline (or answers a queued function error). */
const startInvokeProxy = async (offlinePort: number, counts: Invocations, functionErrors: { queued: number }) => {
  const server = createServer((req, res) => {
    void readBody(req)
      .then(async (payload) => {
        if (req.method === 'POST' && /\/functions\/[^/]+\/invocations$/.test(req.url ?? '')) {
          counts.total += 1;
          const { request, viaUrl } = tokenRequestOf(payload);
          if (request.forceRefresh === true) counts.forced += 1;
          if (viaUrl) counts.url += 1;
          if (functionErrors.queued > 0) {
            functionErrors.queued -= 1;
            res.writeHead(200, { 'content-type': 'application/json', 'x-amz-function-error': 'Unhandled' });
            return void res.end(JSON.stringify({ errorType: 'Error', errorMessage: 'injected by the test proxy' }));
          }
        }
        const headers = Object.fromEntries(
          Object.entries(req.headers).filter(([name]) => name !== 'host' && name !== 'content-length'),
        ) as Record<string, string>;
        const answer = await fetch(`http://127.0.0.1:${offlinePort}${req.url}`, {
          method: req.method,
          headers,
          body: req.method === 'GET' ? undefined : payload,
        });
        const out: Record<string, string> = {};
        answer.headers.forEach((value, name) => {
          if (!['content-length', 'transfer-encoding', 'connection', 'content-encoding'].includes(name))
            out[name] = value;
        });
        res.writeHead(answer.status, out);
        res.end(Buffer.from(await answer.arrayBuffer()));
      })
      .catch(() => res.destroy());
  });
  return listenOnLoopback(server);
};

const SIGV4 =
  /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/;

/**
 * What AWS does for a Function URL with AuthType AWS_IAM: check the SigV4 signature (service `lambda`) with the
 * signer's credentials, refuse with 403 {"Message"} otherwise, and invoke the function with a URL event naming the
 * signer in requestContext.authorizer.iam.
 */
const startFunctionUrl = async (
  lambdaEndpoint: string,
  signers: Map<string, { role: Role; credentials: AwsCredentialIdentity; arn: string }>,
) => {
  const refuse = (res: import('node:http').ServerResponse, message: string) => {
    res.writeHead(403, { 'content-type': 'application/json', 'x-amzn-errortype': 'AccessDeniedException' });
    res.end(JSON.stringify({ Message: message }));
  };
  const server = createServer((req, res) => {
    void readBody(req)
      .then(async (body) => {
        const match = SIGV4.exec(req.headers.authorization ?? '');
        const signer = match ? signers.get(match[1]!) : undefined;
        if (!match || !signer)
          return refuse(res, 'Forbidden. For troubleshooting Function URL authorization issues, see the Lambda docs');
        const [, , , region, service, signedHeaders, signature] = match;
        const amzDate = String(req.headers['x-amz-date'] ?? '');
        const date = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
        if (service !== 'lambda' || !date)
          return refuse(res, 'The request signature we calculated does not match the signature you provided.');
        const headers: Record<string, string> = {};
        for (const name of signedHeaders!.split(';')) headers[name] = String(req.headers[name] ?? '');
        // A signed payload hash must be the body's (the signer trusts the header when it is there).
        const payloadHash = headers['x-amz-content-sha256'];
        if (payloadHash !== undefined && payloadHash !== createHash('sha256').update(body).digest('hex')) {
          return refuse(res, 'The provided x-amz-content-sha256 header does not match what was computed.');
        }
        const url = new URL(req.url ?? '/', 'http://placeholder');
        // applyChecksum false: x-amz-content-sha256 is signed only if the caller signed it (the Node SDK does, botocore not).
        const verifier = new SignatureV4({
          service: 'lambda',
          region: region!,
          credentials: signer.credentials,
          sha256: Hash.bind(null, 'sha256'),
          applyChecksum: false,
        });
        const expected = await verifier.sign(
          {
            method: req.method ?? 'POST',
            protocol: 'http:',
            hostname: '127.0.0.1',
            path: url.pathname,
            headers,
            body: body.toString('utf8'),
          },
          { signingDate: new Date(Date.UTC(+date[1]!, +date[2]! - 1, +date[3]!, +date[4]!, +date[5]!, +date[6]!)) },
        );
        if (!String(expected.headers.authorization ?? '').endsWith(`Signature=${signature}`)) {
          return refuse(res, 'The request signature we calculated does not match the signature you provided.');
        }
        const session = signer.arn.split('/').pop()!;
        const event = urlEvent(body.toString('utf8'), {
          iam: { userArn: signer.arn, accountId: STS_ACCOUNT, principalOrgId: null },
        });
        event.requestContext.authorizer!.iam.callerId = `AROA:${session}`;
        const invoked = await fetch(`${lambdaEndpoint}/2015-03-31/functions/${FUNCTION_NAME}/invocations`, {
          method: 'POST',
          body: JSON.stringify(event),
        });
        const answer = (await invoked.json()) as {
          statusCode?: number;
          headers?: Record<string, string>;
          body?: string;
        };
        res.writeHead(answer.statusCode ?? 502, answer.headers ?? {});
        res.end(answer.body ?? '');
      })
      .catch(() => res.destroy());
  });
  return listenOnLoopback(server);
};

export const startCallerStack = async (): Promise<CallerStack> => {
  const [sts, broker] = await Promise.all([
    startStsStack([...ROLES]),
    startBrokerStack({ tableName: 'tokens-callers' }),
  ]);
  const stops: Array<() => Promise<void>> = [() => broker.stop(), () => sts.stop()];
  const lines: string[] = [];
  let offline: Offline | undefined;
  try {
    const roleArn = (role: Role) => `arn:aws:iam::${STS_ACCOUNT}:role/${role}`;
    const sessionArn = (role: Role) => `arn:aws:sts::${STS_ACCOUNT}:assumed-role/${role}/${role}-session`;
    const client = broker.sandbox.clients[0]!;
    const offlinePort = await freePort();
    offline = await startOffline(offlinePort, {
      root: ROOT,
      stage: 'local',
      params: {
        region: REGION,
        tokenTableName: broker.tableName,
        tokenKmsKeyId: broker.kmsKeyId,
        limitrailSecret: SECRET_ID,
        limitrailTokenUrl: broker.sandbox.tokenUrl,
        limitrailClientId: client.clientId,
        callerAuth: 'grants',
        brokerCallers: JSON.stringify(
          GRANTED_ROLES.map((role) => ({ principal: roleArn(role), client: 'limitrail', scopes: GRANTED_SCOPES })),
        ),
      },
      env: localAwsEnv({ aws: broker.moto.endpoint, sts: sts.endpoint }, REGION),
      onLine: (line) => lines.push(line),
    });
    const started = offline;
    stops.unshift(() => stopProcess(started));
    const counts: Invocations = { total: 0, forced: 0, url: 0 };
    const functionErrors = { queued: 0 };
    const proxy = await startInvokeProxy(offlinePort, counts, functionErrors);
    stops.unshift(() => proxy.close());
    const signers = new Map(
      ROLES.map((role) => [
        sts.credentials(role).accessKeyId,
        { role, credentials: sts.credentials(role), arn: sessionArn(role) },
      ]),
    );
    const functionUrl = await startFunctionUrl(proxy.url, signers);
    stops.unshift(() => functionUrl.close());
    return {
      broker,
      sts,
      lambdaEndpoint: proxy.url,
      functionUrl: `${functionUrl.url}/`,
      credentials: (role) => sts.credentials(role),
      sessionArn,
      invocations: () => ({ ...counts }),
      upstream: () => broker.sandbox.stats().tokenRequests,
      queueFunctionErrors: (count) => {
        functionErrors.queued += count;
      },
      logs: () => [...lines],
      stop: async () => {
        for (const stop of stops) await stop().catch(() => undefined);
      },
    };
  } catch (err) {
    if (offline) await stopProcess(offline);
    await Promise.allSettled([broker.stop(), sts.stop()]);
    throw err;
  }
};
