// The KMS key that signs the client assertions of private_key_jwt clients (docs/deploy.md, "Signing keys"), from the
// stage parameters (generated here: serverless.yml cannot map a key spec to its algorithm or loop over key ARNs):
//   - upstreamSigningKey: '' (the default: no signing key, no permission), RSA_2048 or ECC_NIST_P256 (the stack
//     creates a KeyUsage SIGN_VERIFY key of that spec, alias alias/<service>-<stage>-upstream-signing), or existing
//     key ARNs, comma-separated (a rotation lists the new and the old key);
//   - upstreamSigningAlgorithm: RS256, PS256 or ES256, the one algorithm the functions may sign with; default: the
//     created key spec's (RS256 for RSA_2048, ES256 for ECC_NIST_P256); required with existing keys.
// The function roles may kms:Sign with exactly these keys, only that algorithm (kms:SigningAlgorithm) and only a raw
// message (kms:MessageType RAW: KMS hashes it, so nobody can have an arbitrary digest signed), and kms:GetPublicKey
// (the kid of each assertion; the public key is not secret). A created key's policy is as strict as the token key's
// (infra/kms.yml): named administrative actions for the account, kms:PutKeyPolicy held to tokenKeyAdminRoleArn when
// given, no kms:CreateGrant, kms:Sign for the two function roles only (by aws:PrincipalArn), kms:GetPublicKey left to
// IAM (the roles, and whoever runs `npm run jwks`). The JWS -> KMS algorithm names come from the broker's own code
// (functions/lib/upstream/jwk.ts). Anything else fails the packaging, naming the parameter.
'use strict';

const KEY_SPECS = ['RSA_2048', 'ECC_NIST_P256'];
/** A KMS key ARN (not an alias: IAM authorizes a signature on the key it is made with). */
const KEY_ARN =
  /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;

let jose;
/** functions/lib/upstream/jwk.ts, loaded with tsx (a devDependency, as for the configuration checks). */
const loadJose = () => {
  jose ??= import('tsx/esm/api').then(({ tsImport }) => tsImport('../functions/lib/upstream/jwk.ts', __filename));
  return jose;
};

/** `upstreamSigningKey`: undefined (none), a key spec to create, or the ARNs of existing keys. */
const parseSigningKey = (value) => {
  const text = String(value ?? '').trim();
  if (text === '') return undefined;
  if (KEY_SPECS.includes(text)) return { create: text };
  const arns = text.split(',').map((s) => s.trim());
  for (const arn of arns) {
    if (!KEY_ARN.test(arn)) {
      throw new Error(
        `parameter upstreamSigningKey must be ${KEY_SPECS.join(' or ')} (the stack creates the key), or KMS key ARNs ` +
          `(arn:aws:kms:<region>:<account>:key/<id>), comma-separated; ${JSON.stringify(arn.slice(0, 100))} is neither`,
      );
    }
  }
  if (new Set(arns).size !== arns.length) throw new Error('parameter upstreamSigningKey lists a key twice');
  return { existing: arns };
};

/** The JWS algorithm the roles may sign with, checked against a created key's spec. */
const chooseAlgorithm = (value, keys, { KMS_SIGNING_ALGORITHMS, defaultAlgorithmFor }) => {
  const text = String(value ?? '').trim();
  const names = Object.keys(KMS_SIGNING_ALGORITHMS);
  if (text === '') {
    if (keys.create) return defaultAlgorithmFor(keys.create);
    throw new Error(`parameter upstreamSigningAlgorithm is required with existing signing keys: ${names.join(', ')}`);
  }
  if (!names.includes(text)) throw new Error(`parameter upstreamSigningAlgorithm must be one of ${names.join(', ')}`);
  if (keys.create && (text === 'ES256') !== (keys.create === 'ECC_NIST_P256')) {
    throw new Error(`parameter upstreamSigningAlgorithm ${text} cannot sign with a ${keys.create} key`);
  }
  return text;
};

const keyPolicy = ({ tokenRoleName, prewarmRoleName, kmsAlgorithm, adminRoleArn }) => {
  const root = { AWS: { 'Fn::Sub': 'arn:${AWS::Partition}:iam::${AWS::AccountId}:root' } };
  const role = (name) => ({ 'Fn::Sub': `arn:\${AWS::Partition}:iam::\${AWS::AccountId}:role/${name}` });
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'AccountAdministersKey',
        Effect: 'Allow',
        Principal: root,
        Action: [
          'kms:DescribeKey',
          'kms:GetKeyPolicy',
          'kms:ListKeyPolicies',
          'kms:ListResourceTags',
          'kms:ListGrants',
          'kms:RevokeGrant',
          'kms:EnableKey',
          'kms:DisableKey',
          'kms:UpdateKeyDescription',
          'kms:TagResource',
          'kms:UntagResource',
          'kms:CreateAlias',
          'kms:UpdateAlias',
          'kms:DeleteAlias',
          'kms:ScheduleKeyDeletion',
          'kms:CancelKeyDeletion',
        ],
        Resource: '*',
      },
      {
        Sid: 'KeyPolicyAdministrator',
        Effect: 'Allow',
        Principal: root,
        Action: 'kms:PutKeyPolicy',
        Resource: '*',
        ...(adminRoleArn ? { Condition: { ArnEquals: { 'aws:PrincipalArn': adminRoleArn } } } : {}),
      },
      {
        // The public key is not secret: whom IAM allows (the function roles; whoever runs `npm run jwks`).
        Sid: 'PublicKeyForJwks',
        Effect: 'Allow',
        Principal: root,
        Action: 'kms:GetPublicKey',
        Resource: '*',
      },
      {
        Sid: 'BrokerFunctionsSign',
        Effect: 'Allow',
        Principal: root,
        Action: 'kms:Sign',
        Resource: '*',
        Condition: {
          ArnEquals: { 'aws:PrincipalArn': [role(tokenRoleName), role(prewarmRoleName)] },
          StringEquals: { 'kms:SigningAlgorithm': kmsAlgorithm, 'kms:MessageType': 'RAW' },
        },
      },
    ],
  };
};

module.exports = async ({ resolveVariable }) => {
  const keys = parseSigningKey(await resolveVariable('param:upstreamSigningKey'));
  if (!keys) return { Resources: {} };
  const algorithm = chooseAlgorithm(await resolveVariable('param:upstreamSigningAlgorithm'), keys, await loadJose());
  const { KMS_SIGNING_ALGORITHMS } = await loadJose();
  const kmsAlgorithm = KMS_SIGNING_ALGORITHMS[algorithm];
  const service = await resolveVariable('self:service');
  const stage = await resolveVariable('sls:stage');
  const tokenRoleName = await resolveVariable('self:custom.tokenRoleName');
  const prewarmRoleName = await resolveVariable('self:custom.prewarmRoleName');
  // Unset on most stages: osls fails to resolve a parameter nobody defined.
  const adminRoleArn = await resolveVariable('param:tokenKeyAdminRoleArn').catch(() => '');
  const keyArns = keys.create ? [{ 'Fn::GetAtt': ['UpstreamSigningKey', 'Arn'] }] : keys.existing;
  const Resources = {
    UpstreamSigningKeyUse: {
      Type: 'AWS::IAM::Policy',
      Properties: {
        PolicyName: 'upstream-signing-key',
        Roles: [{ Ref: 'TokenFunctionRole' }, { Ref: 'PrewarmFunctionRole' }],
        PolicyDocument: {
          Version: '2012-10-17',
          Statement: [
            {
              Sid: 'UpstreamSigningKeySign',
              Effect: 'Allow',
              Action: 'kms:Sign',
              Resource: keyArns,
              Condition: { StringEquals: { 'kms:SigningAlgorithm': kmsAlgorithm, 'kms:MessageType': 'RAW' } },
            },
            { Sid: 'UpstreamSigningKeyPublicKey', Effect: 'Allow', Action: 'kms:GetPublicKey', Resource: keyArns },
          ],
        },
      },
    },
  };
  if (keys.create) {
    Resources.UpstreamSigningKey = {
      Type: 'AWS::KMS::Key',
      // Never deleted by CloudFormation: an identity provider trusts this key, and a key pending deletion signs nothing.
      // Removing it from the stack (deleting the stack, or moving the stage to existing keys for a rotation, see
      // docs/deploy.md) or replacing it (another key spec) leaves the key and its policy; delete it yourself when no
      // client signs with it any more.
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
      Properties: {
        Description: `Signs private_key_jwt client assertions (${service} ${stage}), ${algorithm}`,
        KeySpec: keys.create,
        KeyUsage: 'SIGN_VERIFY',
        PendingWindowInDays: 30,
        KeyPolicy: keyPolicy({ tokenRoleName, prewarmRoleName, kmsAlgorithm, adminRoleArn }),
        Tags: [
          { Key: 'service', Value: service },
          { Key: 'stage', Value: stage },
        ],
      },
    };
    Resources.UpstreamSigningKeyAlias = {
      Type: 'AWS::KMS::Alias',
      Properties: {
        AliasName: `alias/${service}-${stage}-upstream-signing`,
        TargetKeyId: { Ref: 'UpstreamSigningKey' },
      },
    };
  }
  return {
    Resources,
    Outputs: {
      UpstreamSigningKeyArns: {
        Description: `Keys the functions may sign with (${algorithm}); publish them with npm run jwks -- --key <arn>`,
        Value: keys.create ? { 'Fn::GetAtt': ['UpstreamSigningKey', 'Arn'] } : keys.existing.join(','),
      },
    },
  };
};

module.exports.parseSigningKey = parseSigningKey;
