/**
 * The IAM evaluation table's rows for the upstream signing key (infra/upstream-signing.cjs), when the stage has one:
 * each function role signs with it only as the code does (the recorded Sign, its algorithm, a raw message) and reads
 * its public key; everything else stays denied, under the key's own policy and again under AWS's default key policy
 * (an existing key, where only the role policy guards). Then who else may use it: an account administrator with
 * kms:* may not sign, an operator whose IAM policy allows kms:GetPublicKey may read the public key (`npm run jwks`),
 * a role without such a policy may not.
 */
import { type BrokerIam, type Caller, callerRole, defaultKeyPolicy, type NamedPolicy } from './iam-model';
import type { CodeCall, Context, Decision, IamRow } from './iam-table';

/** An operator role that publishes the JWK Set: kms:GetPublicKey on the signing key, nothing else. */
export const jwksOperatorPolicy = (signingKeyArn: string): NamedPolicy => ({
  name: 'PublishUpstreamJwks',
  policy: {
    Version: '2012-10-17',
    Statement: [{ Sid: 'PublishUpstreamJwks', Effect: 'Allow', Action: 'kms:GetPublicKey', Resource: signingKeyArn }],
  },
});

/** How the rows of a role on the signing key read when it is an existing key under AWS's default key policy. */
export const EXISTING_SIGNING_KEY = "existing signing key (AWS's default key policy)";

const sign = (algorithm: string, messageType = 'RAW'): Context => ({
  'kms:SigningAlgorithm': algorithm,
  'kms:MessageType': messageType,
});

/** The rows of one function role on the signing key (none when the stage has no signing key). */
export const signingRoleRows = (iam: BrokerIam, fn: string, role: Caller, own: CodeCall[]): IamRow[] => {
  const signingKeyArn = iam.signingKeyArn;
  if (!signingKeyArn) return [];
  const signs = own.filter((c) => c.resource === signingKeyArn && c.action === 'kms:Sign');
  if (signs.length === 0)
    throw new Error(`the ${fn} function never signed: the signing key's allowed rows come from it`);
  const algorithm = String(signs[0]!.context['kms:SigningAlgorithm']);
  const other = algorithm === 'ECDSA_SHA_256' ? 'ECDSA_SHA_384' : 'RSASSA_PKCS1_V1_5_SHA_512';
  const otherKeyArn = `arn:aws:kms:${iam.region}:${iam.accountId}:key/7e6d5c4b-3a29-4817-8f6e-5d4c3b2a1908`;
  const rows: IamRow[] = [];
  const onKey = (label: string, resourcePolicy?: NamedPolicy) => {
    const row = (name: string, action: string, expect: Decision, context?: Context) =>
      rows.push({
        name: `${fn} role${label}: ${name}`,
        caller: role,
        action,
        resource: signingKeyArn,
        expect,
        ...(context ? { context } : {}),
        ...(resourcePolicy ? { resourcePolicy } : {}),
      });
    if (resourcePolicy)
      for (const call of own.filter((c) => c.resource === signingKeyArn))
        row(call.what, call.action, 'Allowed', call.context);
    row(`Sign with another algorithm (${other})`, 'kms:Sign', 'Denied', sign(other));
    row(`Sign a digest (MessageType DIGEST, ${algorithm})`, 'kms:Sign', 'Denied', sign(algorithm, 'DIGEST'));
    row('Verify with the signing key', 'kms:Verify', 'Denied', sign(algorithm));
    row('CreateGrant on the signing key', 'kms:CreateGrant', 'Denied');
    row('PutKeyPolicy on the signing key', 'kms:PutKeyPolicy', 'Denied');
    row('ScheduleKeyDeletion of the signing key', 'kms:ScheduleKeyDeletion', 'Denied');
  };
  onKey('');
  onKey(`, ${EXISTING_SIGNING_KEY}`, defaultKeyPolicy(iam.accountId));
  rows.push(
    {
      name: `${fn} role: Sign with another key (AWS's default key policy), the code's algorithm`,
      caller: role,
      action: 'kms:Sign',
      resource: otherKeyArn,
      context: sign(algorithm),
      expect: 'Denied',
    },
    {
      name: `${fn} role: Sign with the token key, the code's algorithm`,
      caller: role,
      action: 'kms:Sign',
      resource: iam.keyArn,
      context: sign(algorithm),
      expect: 'Denied',
    },
  );
  return rows;
};

/** Who else may use the signing key: an account admin may not sign; an operator may read the public key. */
export const signingOtherRows = (iam: BrokerIam, algorithm: string): IamRow[] => {
  const signingKeyArn = iam.signingKeyArn;
  if (!signingKeyArn) return [];
  const admin = callerRole(iam.accountId, 'account-admin', [
    {
      name: 'broad-kms',
      policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: 'kms:*', Resource: '*' }] },
    },
  ]);
  const operator = callerRole(iam.accountId, 'platform-operator', [jwksOperatorPolicy(signingKeyArn)]);
  const row = (name: string, caller: Caller, action: string, expect: Decision, context?: Context): IamRow => ({
    name,
    caller,
    action,
    resource: signingKeyArn,
    expect,
    ...(context ? { context } : {}),
  });
  return [
    row('account admin (kms:* on *): Sign with the signing key', admin, 'kms:Sign', 'Denied', sign(algorithm)),
    row('account admin (kms:* on *): GetPublicKey of the signing key', admin, 'kms:GetPublicKey', 'Allowed'),
    row('operator with kms:GetPublicKey (npm run jwks): GetPublicKey', operator, 'kms:GetPublicKey', 'Allowed'),
    row('operator with kms:GetPublicKey (npm run jwks): Sign', operator, 'kms:Sign', 'Denied', sign(algorithm)),
    row(
      'role of the account without an identity policy: GetPublicKey of the signing key',
      callerRole(iam.accountId, 'someone'),
      'kms:GetPublicKey',
      'Denied',
    ),
  ];
};
