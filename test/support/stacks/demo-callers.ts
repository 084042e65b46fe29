/**
 * The local stack's callers: two IAM roles in moto, one with a grant in BROKER_CALLERS and one without, and the
 * way a local tool becomes one of them (STS AssumeRole in moto, then an identity proof signed with the session's
 * credentials). `npm start` creates the roles and passes the grant; `npm run token` and the tests sign as them.
 * Set-up code for local runs, never part of the broker. The stack file records only the role ARNs, the STS endpoint
 * and the audience; session credentials are written only to .local/aws/credentials, the profiles for your own code
 * (local/caller-files.ts), and are moto's: useless anywhere else.
 */
import { CreateRoleCommand, EntityAlreadyExistsException, GetRoleCommand, IAMClient } from '@aws-sdk/client-iam';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import { type IdentityProof, signIdentityProof } from '@limitrail/token-broker-client';
import type { AwsCredentialIdentity } from '@smithy/types';

/**
 * Role names in moto's default account (123456789012): `granted` (the `limitrail` client), `nogrant`, and `jwt`,
 * granted npm start's private_key_jwt client (a role's grants naming one client, so no request needs to name it).
 */
export const DEMO_ROLES = {
  granted: 'limitrail-demo-caller',
  nogrant: 'limitrail-demo-nogrant',
  jwt: 'limitrail-demo-jwt-caller',
} as const;
export type DemoCaller = keyof typeof DEMO_ROLES;
export const isDemoCaller = (name: string): name is DemoCaller => Object.hasOwn(DEMO_ROLES, name);

/** What the granted role may ask for, with the `limitrail` client of BROKER_CLIENTS. */
export const DEMO_GRANT = { client: 'limitrail', scopes: ['limitrail.usage.read', 'limitrail.usage.write'] } as const;

/** moto accepts any credentials; explicit dummy ones keep the default chain (profiles, IMDS) out of local runs. */
const MOTO_CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' };

/** Who may assume the demo roles: anyone in moto's default account (moto does not enforce it; AWS would). */
const TRUST_POLICY = JSON.stringify({
  Version: '2012-10-17',
  Statement: [{ Effect: 'Allow', Principal: { AWS: 'arn:aws:iam::123456789012:root' }, Action: 'sts:AssumeRole' }],
});

const ensureRole = async (iam: IAMClient, roleName: string, description: string): Promise<string> => {
  try {
    const { Role } = await iam.send(
      new CreateRoleCommand({
        RoleName: roleName,
        AssumeRolePolicyDocument: TRUST_POLICY,
        Description: description,
        Tags: [
          { Key: 'service', Value: 'limitrail-token-broker' },
          { Key: 'stage', Value: 'local' },
        ],
      }),
    );
    if (!Role?.Arn) throw new Error(`CreateRole ${roleName} returned no ARN`);
    return Role.Arn;
  } catch (err) {
    if (!(err instanceof EntityAlreadyExistsException)) throw err;
  }
  const { Role } = await iam.send(new GetRoleCommand({ RoleName: roleName }));
  if (!Role?.Arn) throw new Error(`GetRole ${roleName} returned no ARN`);
  return Role.Arn;
};

/** Creates (or finds) both demo roles in moto's IAM; returns their ARNs. */
export const ensureDemoCallers = async (endpoint: string, region: string): Promise<Record<DemoCaller, string>> => {
  const iam = new IAMClient({ endpoint, region, credentials: MOTO_CREDENTIALS });
  try {
    const [granted, nogrant, jwt] = await Promise.all([
      ensureRole(
        iam,
        DEMO_ROLES.granted,
        `limitrail-token-broker local: a caller granted ${DEMO_GRANT.scopes.join(', ')}`,
      ),
      ensureRole(iam, DEMO_ROLES.nogrant, 'limitrail-token-broker local: a caller with no grant (refused)'),
      ensureRole(iam, DEMO_ROLES.jwt, 'limitrail-token-broker local: a caller granted the private_key_jwt client'),
    ]);
    return { granted, nogrant, jwt };
  } finally {
    iam.destroy();
  }
};

/**
 * The local stage's grants: the granted role (any of its sessions) gets DEMO_GRANT; the jwt role the same scopes of
 * `keyClient` (npm start's private_key_jwt client), when there is one.
 */
export const demoGrants = (roles: Record<DemoCaller, string>, keyClient?: string) => [
  { principal: roles.granted, client: DEMO_GRANT.client, scopes: [...DEMO_GRANT.scopes] },
  ...(keyClient ? [{ principal: roles.jwt, client: keyClient, scopes: [...DEMO_GRANT.scopes] }] : []),
];

/** BROKER_CALLERS for the local stage: the demo grants. */
export const demoBrokerCallers = (roles: Record<DemoCaller, string>, keyClient?: string): string =>
  JSON.stringify(demoGrants(roles, keyClient));

export interface DemoSession {
  /** The session's ARN, `arn:aws:sts::123456789012:assumed-role/<role>/<session>`: who the proof proves. */
  arn: string;
  credentials: AwsCredentialIdentity;
}

/** Session credentials for a role, from AssumeRole in moto. */
export const assumeDemoCaller = async (options: {
  stsEndpoint: string;
  region: string;
  roleArn: string;
  sessionName: string;
}): Promise<DemoSession> => {
  const sts = new STSClient({
    endpoint: options.stsEndpoint,
    region: options.region,
    credentials: MOTO_CREDENTIALS,
    maxAttempts: 1,
  });
  try {
    const { Credentials: c, AssumedRoleUser } = await sts.send(
      new AssumeRoleCommand({ RoleArn: options.roleArn, RoleSessionName: options.sessionName }),
    );
    if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken || !AssumedRoleUser?.Arn) {
      throw new Error(`AssumeRole ${options.roleArn} returned no session credentials`);
    }
    return {
      arn: AssumedRoleUser.Arn,
      credentials: {
        accessKeyId: c.AccessKeyId,
        secretAccessKey: c.SecretAccessKey,
        sessionToken: c.SessionToken,
        expiration: c.Expiration,
      },
    };
  } finally {
    sts.destroy();
  }
};

/** Becomes the role (AssumeRole) and signs one fresh proof for the broker's audience, sent to moto's STS. */
export const signAsDemoCaller = async (options: {
  stsEndpoint: string;
  region: string;
  roleArn: string;
  sessionName: string;
  audience: string;
}): Promise<{ arn: string; identityProof: IdentityProof }> => {
  const session = await assumeDemoCaller(options);
  const identityProof = await signIdentityProof({
    credentials: session.credentials,
    region: options.region,
    audience: options.audience,
    stsUrl: options.stsEndpoint,
  });
  return { arn: session.arn, identityProof };
};
