import { createServer, request as httpRequest, type Server } from 'node:http';
import { CreateRoleCommand, IAMClient } from '@aws-sdk/client-iam';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import type { AwsCredentialIdentity } from '@smithy/types';
import { listenOnLoopback } from '../process/listen';
import { type MotoServer, startMoto } from './moto';

/**
 * STS for identity-proof tests: a moto_server of its own whose IAM holds the callers' roles, with moto's request
 * authentication switched on once the roles exist, so STS really checks every proof's SigV4 signature and
 * credentials (a tampered signature is SignatureDoesNotMatch, unknown keys InvalidClientTokenId). In front of it,
 * a pass-through proxy on 127.0.0.1 counts the requests that reach STS and can take STS down (connections cut)
 * or make it fail (HTTP 500 with STS's error shape). The broker's AWS_ENDPOINT_URL_STS is the proxy.
 */
export const STS_ACCOUNT = '123456789012';
export const STS_REGION = 'us-east-1';

export type StsMode = 'up' | 'down' | 'failing' | 'slow';

export interface StsStack {
  /** http://127.0.0.1:PORT of the counting proxy: AWS_ENDPOINT_URL_STS and the proofs' URL. */
  endpoint: string;
  moto: MotoServer;
  roleArn(name: string): string;
  /** Fresh session credentials of a role (AssumeRole, made before authentication was switched on). */
  credentials(name: string): AwsCredentialIdentity;
  /** Requests that reached the proxy (every STS call the broker made). */
  calls(): number;
  setMode(mode: StsMode): void;
  stop(): Promise<void>;
}

const trustPolicy = JSON.stringify({
  Version: '2012-10-17',
  Statement: [{ Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${STS_ACCOUNT}:root` }, Action: 'sts:AssumeRole' }],
});

export const startStsStack = async (roles: string[]): Promise<StsStack> => {
  const moto = await startMoto();
  const config = {
    endpoint: moto.endpoint,
    region: STS_REGION,
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  };
  const iam = new IAMClient(config);
  const sts = new STSClient(config);
  const sessions = new Map<string, AwsCredentialIdentity>();
  try {
    for (const name of roles) {
      await iam.send(new CreateRoleCommand({ RoleName: name, AssumeRolePolicyDocument: trustPolicy }));
      const { Credentials: c } = await sts.send(
        new AssumeRoleCommand({
          RoleArn: `arn:aws:iam::${STS_ACCOUNT}:role/${name}`,
          RoleSessionName: `${name}-session`,
        }),
      );
      sessions.set(name, {
        accessKeyId: c!.AccessKeyId!,
        secretAccessKey: c!.SecretAccessKey!,
        sessionToken: c!.SessionToken!,
      });
    }
  } finally {
    iam.destroy();
    sts.destroy();
  }
  // From now on moto authenticates every request: signatures are checked.
  const reset = await fetch(`${moto.endpoint}/moto-api/reset-auth`, { method: 'POST', body: '0' });
  if (!reset.ok) throw new Error(`moto reset-auth answered ${reset.status}`);

  let mode: StsMode = 'up';
  let calls = 0;
  const target = new URL(moto.endpoint);
  const proxy: Server = createServer((req, res) => {
    calls += 1;
    if (mode === 'down') return void req.socket.destroy();
    if (mode === 'failing') {
      res.writeHead(500, { 'content-type': 'text/xml' });
      return void res.end(
        '<ErrorResponse><Error><Code>InternalFailure</Code><Message>x</Message></Error></ErrorResponse>',
      );
    }
    if (mode === 'slow') return; // never answers: the broker's timeout must end it
    const upstream = httpRequest(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  const listening = await listenOnLoopback(proxy);

  return {
    endpoint: listening.url,
    moto,
    roleArn: (name) => `arn:aws:iam::${STS_ACCOUNT}:role/${name}`,
    credentials: (name) => {
      const found = sessions.get(name);
      if (!found) throw new Error(`no role ${name} in the STS stack`);
      return found;
    },
    calls: () => calls,
    setMode: (next) => {
      mode = next;
    },
    stop: async () => {
      await listening.close();
      await moto.stop();
    },
  };
};

/** A loopback listener that counts TCP connections: proof URLs that must never be contacted point here. */
export const startConnectionCounter = async (): Promise<{
  url: string;
  connections(): number;
  stop(): Promise<void>;
}> => {
  let connections = 0;
  const server = createServer((_req, res) => res.end('not STS'));
  server.on('connection', () => (connections += 1));
  const listening = await listenOnLoopback(server);
  return { url: `${listening.url}/`, connections: () => connections, stop: listening.close };
};
