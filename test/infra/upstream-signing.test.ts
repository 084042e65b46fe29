/**
 * infra/upstream-signing.cjs on its own, with stage parameters other than the ci stage's (no osls run needed): what
 * each value of upstreamSigningKey and upstreamSigningAlgorithm generates, and what fails the packaging. The ci
 * stage's key as packaged: test/infra/package.test.ts; its IAM rows: test/infra/iam-evaluation.test.ts.
 */
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import type { CfnResource as Resource } from '../support/stacks/packaged-stack';

type Generator = (ctx: { resolveVariable: (name: string) => Promise<string> }) => Promise<{
  Resources: Record<string, Resource>;
  Outputs?: Record<string, { Value: unknown }>;
}>;
const generate = createRequire(import.meta.url)('../../infra/upstream-signing.cjs') as Generator;

const KEY_A = 'arn:aws:kms:eu-west-1:111111111111:key/11111111-2222-3333-4444-555555555555';
const KEY_B = 'arn:aws:kms:eu-west-1:111111111111:key/mrk-0123456789abcdef0123456789abcdef';

const render = (params: Record<string, string>) =>
  generate({
    resolveVariable: async (name) => {
      const value = {
        'param:upstreamSigningKey': '',
        'param:upstreamSigningAlgorithm': '',
        'param:tokenKeyAdminRoleArn': '',
        'self:service': 'limitrail-token-broker',
        'sls:stage': 'staging',
        'self:custom.tokenRoleName': 'limitrail-token-broker-staging-eu-west-1-token',
        'self:custom.prewarmRoleName': 'limitrail-token-broker-staging-eu-west-1-prewarm',
        ...Object.fromEntries(Object.entries(params).map(([k, v]) => [`param:${k}`, v])),
      }[name];
      if (value === undefined) throw new Error(`unexpected variable ${name}`);
      return value;
    },
  });
const signStatement = async (params: Record<string, string>) => {
  const { Resources } = await render(params);
  return (Resources.UpstreamSigningKeyUse!.Properties.PolicyDocument as { Statement: Record<string, unknown>[] })
    .Statement[0]!;
};

describe('infra/upstream-signing.cjs', () => {
  it('generates nothing, and no permission, without a signing key (the default)', async () => {
    expect(await render({})).toEqual({ Resources: {} });
  });

  it.each([
    ['RSA_2048', '', 'RSASSA_PKCS1_V1_5_SHA_256'],
    ['RSA_2048', 'PS256', 'RSASSA_PSS_SHA_256'],
    ['ECC_NIST_P256', '', 'ECDSA_SHA_256'],
  ])('creates a %s key and pins the roles to %s -> %s, raw messages only', async (spec, algorithm, pinned) => {
    const { Resources } = await render({ upstreamSigningKey: spec, upstreamSigningAlgorithm: algorithm });
    expect(Object.keys(Resources).sort()).toEqual([
      'UpstreamSigningKey',
      'UpstreamSigningKeyAlias',
      'UpstreamSigningKeyUse',
    ]);
    expect(Resources.UpstreamSigningKey!.Properties).toMatchObject({ KeySpec: spec, KeyUsage: 'SIGN_VERIFY' });
    expect(await signStatement({ upstreamSigningKey: spec, upstreamSigningAlgorithm: algorithm })).toMatchObject({
      Action: 'kms:Sign',
      Resource: [{ 'Fn::GetAtt': ['UpstreamSigningKey', 'Arn'] }],
      Condition: { StringEquals: { 'kms:SigningAlgorithm': pinned, 'kms:MessageType': 'RAW' } },
    });
    // Without tokenKeyAdminRoleArn, key policy changes are left to the account's IAM (as for the token key).
    const policy = Resources.UpstreamSigningKey!.Properties.KeyPolicy as { Statement: Record<string, unknown>[] };
    expect(policy.Statement.find((s) => s.Sid === 'KeyPolicyAdministrator')).not.toHaveProperty('Condition');
  });

  it('lets the roles sign with existing keys (a rotation: new and old), creating none', async () => {
    const { Resources, Outputs } = await render({
      upstreamSigningKey: `${KEY_A}, ${KEY_B}`,
      upstreamSigningAlgorithm: 'ES256',
    });
    expect(Object.keys(Resources)).toEqual(['UpstreamSigningKeyUse']);
    expect(
      await signStatement({ upstreamSigningKey: `${KEY_A},${KEY_B}`, upstreamSigningAlgorithm: 'ES256' }),
    ).toMatchObject({
      Resource: [KEY_A, KEY_B],
      Condition: { StringEquals: { 'kms:SigningAlgorithm': 'ECDSA_SHA_256', 'kms:MessageType': 'RAW' } },
    });
    expect(Outputs!.UpstreamSigningKeyArns!.Value).toBe(`${KEY_A},${KEY_B}`);
  });

  it.each([
    [{ upstreamSigningKey: 'RSA_4096' }, 'parameter upstreamSigningKey must be RSA_2048 or ECC_NIST_P256'],
    [{ upstreamSigningKey: 'arn:aws:kms:eu-west-1:111111111111:alias/x' }, 'is neither'],
    [{ upstreamSigningKey: `${KEY_A},${KEY_A}`, upstreamSigningAlgorithm: 'RS256' }, 'lists a key twice'],
    [
      { upstreamSigningKey: KEY_A },
      'parameter upstreamSigningAlgorithm is required with existing signing keys: RS256, PS256, ES256',
    ],
    [{ upstreamSigningKey: 'RSA_2048', upstreamSigningAlgorithm: 'HS256' }, 'must be one of RS256, PS256, ES256'],
    [{ upstreamSigningKey: 'RSA_2048', upstreamSigningAlgorithm: 'ES256' }, 'ES256 cannot sign with a RSA_2048 key'],
    [
      { upstreamSigningKey: 'ECC_NIST_P256', upstreamSigningAlgorithm: 'RS256' },
      'RS256 cannot sign with a ECC_NIST_P256 key',
    ],
  ])('fails the packaging on %j, naming the parameter', async (params, message) => {
    await expect(render(params)).rejects.toThrow(message);
  });
});
