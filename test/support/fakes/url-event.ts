import { randomUUID } from 'node:crypto';

/**
 * A Function URL (payload format 2.0) event as Lambda builds it, for tests of the URL path. `iam` is what AWS
 * puts in requestContext.authorizer.iam after verifying a SigV4-signed URL call (AuthType AWS_IAM); a direct
 * invoker can write the same shape by hand, which is what some tests do.
 */
export interface Iam {
  userArn: string;
  accountId: string;
  principalOrgId?: string | null;
}

/** The identity AWS passes for a session of role `name`. */
export const roleSession = (name: string, account: string, session = 'i-0abc'): Iam => ({
  userArn: `arn:aws:sts::${account}:assumed-role/${name}/${session}`,
  accountId: account,
  principalOrgId: null,
});

export const urlEvent = (body: unknown, options: { iam?: Iam; method?: string; base64?: boolean } = {}) => {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: '/',
    rawQueryString: '',
    headers: { 'content-type': 'application/json', host: 'abc.lambda-url.eu-central-1.on.aws' },
    requestContext: {
      accountId: 'anonymous',
      apiId: 'abc',
      domainName: 'abc.lambda-url.eu-central-1.on.aws',
      domainPrefix: 'abc',
      http: {
        method: options.method ?? 'POST',
        path: '/',
        protocol: 'HTTP/1.1',
        sourceIp: '10.0.0.1',
        userAgent: 'test',
      },
      requestId: randomUUID(),
      routeKey: '$default',
      stage: '$default',
      time: '29/Nov/2026:06:00:00 +0000',
      timeEpoch: Date.now(),
      ...(options.iam
        ? {
            authorizer: {
              iam: {
                accessKey: 'ASIA',
                callerId: 'AROA:i-0abc',
                cognitoIdentity: null,
                userId: 'AROA:i-0abc',
                ...options.iam,
              },
            },
          }
        : {}),
    },
    body: options.base64 ? Buffer.from(text).toString('base64') : text,
    isBase64Encoded: options.base64 ?? false,
  };
};
