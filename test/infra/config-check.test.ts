/**
 * The package-time checks of a stage (infra/config-check.ts) on their own, with stage settings written out here and
 * the parameter sources read from the real serverless.yml. What `osls package` prints for them, through the plugin:
 * test/infra/config-check-package.test.ts.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import {
  checkStage,
  findingsMessage,
  looksLikeProduction,
  missingParameters,
  missingParametersMessage,
  type ParameterSources,
  parameterSources,
  type RawConfig,
  type StageSettings,
} from '../../infra/config-check';
import { ROOT } from '../support/stacks/packaged-stack';

/** serverless.yml as osls reads it, before any variable is resolved. */
const readServerlessYml = async (): Promise<RawConfig> =>
  (createRequire(import.meta.url)('osls/lib/configuration/read') as (path: string) => Promise<RawConfig>)(
    join(ROOT, 'serverless.yml'),
  );

const SCOPES = ['limitrail.usage.read', 'limitrail.usage.write', 'limitrail.accounts.read', 'limitrail.runtime.read'];
const ROLE = (account: string, name: string) => `arn:aws:iam::${account}:role/${name}`;
const grant = (principal: string, scopes = ['limitrail.usage.read']) => ({ principal, client: 'limitrail', scopes });

let raw: RawConfig;
let sources: ParameterSources;

beforeAll(async () => {
  raw = await readServerlessYml();
  sources = parameterSources(raw, 'ci');
});

interface Overrides {
  stage?: string;
  tokenUrl?: string;
  clients?: unknown;
  grants?: unknown[];
  callerAuth?: string;
  params?: Record<string, unknown>;
  environment?: Record<string, unknown>;
}

/** A stage like ci (serverless.yml), with the given changes: resolved settings as the plugin passes them. */
const settings = (o: Overrides = {}): StageSettings => {
  const stage = o.stage ?? 'ci';
  const clients = o.clients ?? {
    limitrail: {
      secretId: `limitrail-token-broker/${stage}/limitrail`,
      tokenUrl: o.tokenUrl ?? 'https://auth.limitrail.example/connect/token',
      clientId: 'lr_00000000000000000000000000000000',
      scopes: SCOPES,
      prewarm: [['limitrail.usage.write']],
    },
  };
  const grants = o.grants ?? [
    grant(ROLE('111111111111', 'billing-service'), ['limitrail.usage.write']),
    grant('333333333333', ['limitrail.accounts.read']),
  ];
  return {
    stage,
    region: 'eu-west-1',
    functionName: `limitrail-token-broker-${stage}-token`,
    params: {
      invokePrincipals: JSON.stringify([ROLE('111111111111', 'billing-service'), ROLE('333333333333', 'exporter')]),
      tokenKeyAdminRoleArn: ROLE('111111111111', 'platform-deploy'),
      existingTokenKmsKeyArn: '',
      ...o.params,
    },
    environment: {
      TOKEN_TABLE_NAME: { Ref: 'TokenTable' },
      BROKER_CLIENTS: JSON.stringify(clients),
      BROKER_CALLERS: JSON.stringify(grants),
      CALLER_AUTH: o.callerAuth ?? 'grants',
      CALLER_PROOF_AUDIENCE: `limitrail-token-broker-${stage}-token`,
      ALLOW_LOOPBACK_TOKEN_URL: 'false',
      TOKEN_KMS_KEY_ID: { 'Fn::GetAtt': ['TokenKmsKey', 'Arn'] },
      ...o.environment,
    },
    sources,
  };
};

describe('required stage parameters', () => {
  it('names every required parameter a stage does not set, as serverless.yml uses them without a fallback', () => {
    expect(missingParameters(raw, 'staging')).toEqual(['limitrailTokenUrl', 'limitrailClientId']);
    expect(missingParameters(raw, 'ci')).toEqual([]);
    expect(missingParameters(raw, 'staging', ['limitrailTokenUrl=https://a.example/t'])).toEqual(['limitrailClientId']);
  });

  it('counts a parameter only where osls resolves it: not in another stage, not behind a fallback', () => {
    const config: RawConfig = {
      provider: { environment: { A: '${param:a}', B: '${param:b, "x"}' } },
      params: { default: { c: '${param:d}' }, other: { e: '${param:f}' }, mine: { a: 1 } },
    };
    expect(missingParameters(config, 'mine')).toEqual(['d']);
    expect(missingParameters(config, 'mine', ['d=1'])).toEqual([]);
    expect(missingParameters({ ...config, params: { ...config.params, mine: { a: null } } }, 'mine')).toEqual([
      'a',
      'd',
    ]);
  });

  it('says how to set them, one line each', () => {
    expect(missingParametersMessage('staging', ['limitrailTokenUrl', 'limitrailClientId'])).toBe(
      [
        'stage "staging" does not set these 2 required stage parameters:',
        '  - limitrailTokenUrl (the LimitRail token endpoint, https://...)',
        '  - limitrailClientId (the public lr_... client id)',
        'Set each in a "staging:" block under "params" in serverless.yml, or with --param "<name>=<value>" (docs/configuration.md).',
      ].join('\n'),
    );
  });
});

describe('parameter sources (serverless.yml)', () => {
  it('maps each environment variable and each BROKER_CLIENTS field to the stage parameter it comes from', () => {
    expect(sources.env).toMatchObject({
      BROKER_CLIENTS: 'brokerClients',
      BROKER_CALLERS: 'brokerCallers',
      BROKER_CALLERS_PARAMETER: 'callersParameter',
      CALLERS_MAX_AGE_SEC: 'callersMaxAgeSec',
      CALLER_AUTH: 'callerAuth',
      ALLOW_LOOPBACK_TOKEN_URL: 'allowLoopbackTokenUrl',
    });
    expect(sources.clientFields).toEqual({
      secretId: 'limitrailSecret',
      tokenUrl: 'limitrailTokenUrl',
      clientId: 'limitrailClientId',
      scopes: 'limitrailScopes',
      prewarm: 'limitrailPrewarm',
    });
  });

  it('names brokerClients itself when the stage or --param sets it', () => {
    expect(parameterSources(raw, 'ci', ['brokerClients={}']).clientFields).toEqual({});
    const own = { ...raw, params: { ...raw.params, mine: { brokerClients: '{}' } } };
    expect(parameterSources(own, 'mine').clientFields).toEqual({});
  });
});

describe('checkStage', () => {
  it('finds nothing in a stage shaped like ci', () => {
    expect(checkStage(settings())).toEqual({ errors: [], warnings: [] });
  });

  it('refuses an http:// token URL, naming limitrailTokenUrl, and never quotes the URL', () => {
    const { errors } = checkStage(settings({ tokenUrl: 'http://auth.limitrail.example/connect/token' }));
    expect(errors).toEqual(['stage parameter limitrailTokenUrl: BROKER_CLIENTS.limitrail.tokenUrl must be https']);
    const withCredentials = checkStage(settings({ tokenUrl: 'https://lr:s3cr3t-value@auth.limitrail.example/t' }));
    expect(withCredentials.errors).toEqual([
      'stage parameter limitrailTokenUrl: BROKER_CLIENTS.limitrail.tokenUrl must not contain credentials',
    ]);
    expect(JSON.stringify(withCredentials)).not.toContain('s3cr3t-value');
  });

  it('names brokerClients for a problem in a brokerClients the stage wrote itself', () => {
    const own = {
      ...settings({ tokenUrl: 'http://auth.limitrail.example/t' }),
      sources: { ...sources, clientFields: {} },
    };
    expect(checkStage(own).errors).toEqual([
      'stage parameter brokerClients: BROKER_CLIENTS.limitrail.tokenUrl must be https',
    ]);
  });

  it('refuses a loopback token URL allowed by allowLoopbackTokenUrl: only the never-packaged local stage may', () => {
    const { errors } = checkStage(
      settings({ tokenUrl: 'http://127.0.0.1:4010/connect/token', environment: { ALLOW_LOOPBACK_TOKEN_URL: 'true' } }),
    );
    expect(errors).toEqual([
      expect.stringMatching(/^stage parameter allowLoopbackTokenUrl is "true", which only the local stage/),
    ]);
    expect(checkStage(settings({ tokenUrl: 'http://127.0.0.1:4010/connect/token' })).errors).toEqual([
      expect.stringMatching(/^stage parameter limitrailTokenUrl: .*plain http to a loopback host/),
    ]);
  });

  it("refuses a grant naming a scope its client does not have, quoting the scope and listing the client's", () => {
    const { errors } = checkStage(
      settings({ grants: [grant(ROLE('111111111111', 'billing-service'), ['limitrail.usage.wrte'])] }),
    );
    expect(errors).toEqual([
      `stage parameter brokerCallers: BROKER_CALLERS[0].scopes[0] must be one of the client's scopes ("limitrail.usage.wrte"; client "limitrail" has ${SCOPES.join(', ')})`,
    ]);
  });

  it('refuses a grant for a client that does not exist, quoting it', () => {
    const { errors } = checkStage(settings({ grants: [{ ...grant('333333333333'), client: 'limitrial' }] }));
    expect(errors).toEqual([
      'stage parameter brokerCallers: BROKER_CALLERS[0].client must name a client in BROKER_CLIENTS ("limitrial")',
    ]);
  });

  it('refuses an invokePrincipals account that no grant covers, saying to name roles rather than accounts', () => {
    const { errors } = checkStage(settings({ params: { invokePrincipals: '["222222222222"]' } }));
    expect(errors).toEqual([
      expect.stringMatching(
        /^stage parameter invokePrincipals: "222222222222" is not covered by any grant in brokerCallers; .*name the roles that have grants rather than a whole account/,
      ),
    ]);
  });

  it('refuses an account even when roles of it have grants: the account admits every other principal in it', () => {
    const { errors } = checkStage(
      settings({
        params: { invokePrincipals: '["111111111111"]' },
        grants: [grant(ROLE('111111111111', 'billing-service'))],
      }),
    );
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain('"111111111111" is not covered');
  });

  it('refuses a role or user without a grant, saying to add one or remove it', () => {
    const { errors } = checkStage(
      settings({
        params: {
          invokePrincipals: JSON.stringify([ROLE('111111111111', 'other'), 'arn:aws:iam::111111111111:user/ci']),
        },
      }),
    );
    expect(errors).toEqual([
      expect.stringMatching(
        /"arn:aws:iam::111111111111:role\/other" is not covered .*add a grant for it to brokerCallers or remove it$/,
      ),
      expect.stringMatching(/"arn:aws:iam::111111111111:user\/ci" is not covered /),
    ]);
  });

  it('accepts invokePrincipals covered by their own grant (any role path) or by a grant to their account', () => {
    const invokers = [
      ROLE('111111111111', 'billing-service'),
      'arn:aws:iam::111111111111:role/service-role/billing-service',
      ROLE('333333333333', 'anything'),
      'arn:aws:iam::333333333333:user/ci',
      '333333333333',
      'arn:aws:iam::333333333333:root',
    ];
    expect(checkStage(settings({ params: { invokePrincipals: JSON.stringify(invokers) } })).errors).toEqual([]);
  });

  it('does not hold invokePrincipals to grants in invoke-permission mode, where invoking is the grant', () => {
    const found = checkStage(
      settings({ callerAuth: 'invoke-permission', params: { invokePrincipals: '["222222222222"]' } }),
    );
    expect(found.errors).toEqual([]);
  });

  it('refuses an organization grant in grants mode (the loader) and warns about one in invoke-permission mode', () => {
    const org = grant('o-a1b2c3d4e5', ['limitrail.accounts.read']);
    expect(checkStage(settings({ grants: [org] })).errors).toEqual([
      expect.stringMatching(
        /^stage parameter brokerCallers: BROKER_CALLERS\[0\]\.principal is an organization.*\("o-a1b2c3d4e5"\)$/,
      ),
    ]);
    const { errors, warnings } = checkStage(
      settings({ callerAuth: 'invoke-permission', grants: [org], params: { invokePrincipals: '[]' } }),
    );
    expect(errors).toEqual([]);
    expect(warnings).toEqual([
      'stage parameter brokerCallers grants organization "o-a1b2c3d4e5": every principal of it may call the Function URL for limitrail.accounts.read without an identity proof; grant accounts or roles where you can (callerAuth "grants" refuses organization grants)',
    ]);
  });

  it('warns for an empty caller list, in either mode', () => {
    const grantsMode = checkStage(settings({ grants: [], params: { invokePrincipals: '[]' } }));
    expect(grantsMode).toEqual({
      errors: [],
      warnings: [
        'stage parameter brokerCallers grants nobody: with callerAuth "grants" every call is refused (access_denied)',
      ],
    });
    const invokeMode = checkStage(settings({ grants: [], callerAuth: 'invoke-permission' }));
    expect(invokeMode.warnings).toEqual([
      expect.stringMatching(/^stage parameter brokerCallers grants nobody: no Function URL call/),
    ]);
  });

  it('leaves callers read from an existing SSM parameter at run time unchecked, and says so', () => {
    // callersParameter: a name (infra/callers-parameter.cjs): BROKER_CALLERS empty, the parameter named.
    const found = checkStage(
      settings({
        params: { callersParameter: '/broker/callers', invokePrincipals: '["222222222222"]' },
        environment: { BROKER_CALLERS: '', BROKER_CALLERS_PARAMETER: '/broker/callers' },
      }),
    );
    expect(found).toEqual({
      errors: [],
      warnings: [
        'the callers come from the SSM parameter /broker/callers (BROKER_CALLERS_PARAMETER) at run time: packaging ' +
          'cannot check them or whether they cover invokePrincipals',
      ],
    });
  });

  it('checks the callers a created parameter starts with (brokerCallers, revokedCallers) as it checks BROKER_CALLERS', () => {
    const created = (params: Record<string, unknown>, grants?: unknown[]) =>
      checkStage(
        settings({
          params: {
            callersParameter: 'create',
            brokerCallers: JSON.stringify(grants ?? [grant(ROLE('111111111111', 'billing-service'))]),
            ...params,
          },
          environment: { BROKER_CALLERS: '', BROKER_CALLERS_PARAMETER: '/limitrail-token-broker/ci/callers' },
        }),
      );
    const billingOnly = { invokePrincipals: JSON.stringify([ROLE('111111111111', 'billing-service')]) };
    expect(created({ ...billingOnly, revokedCallers: '[]' })).toEqual({ errors: [], warnings: [] });
    expect(created({}).errors).toEqual([
      expect.stringMatching(
        /^stage parameter invokePrincipals: "arn:aws:iam::333333333333:role\/exporter" is not covered/,
      ),
    ]);
    expect(
      created(billingOnly, [grant(ROLE('111111111111', 'billing-service'), ['limitrail.usage.wrte'])]).errors,
    ).toEqual([
      expect.stringMatching(
        /^stage parameter brokerCallers: BROKER_CALLERS\[0\]\.scopes\[0\] must be one of the client's scopes \("limitrail\.usage\.wrte"; client "limitrail" has /,
      ),
    ]);
    const revoked = created({
      ...billingOnly,
      revokedCallers: JSON.stringify([ROLE('111111111111', 'x'), '111111111111']),
    });
    expect(revoked.errors).toEqual([
      'stage parameter revokedCallers: [1] "111111111111" is not an IAM role or user ARN or an assumed-role session ARN ' +
        '(an account or organization is not revoked: remove its grant from brokerCallers)',
    ]);
  });

  it('refuses BROKER_CALLERS and BROKER_CALLERS_PARAMETER both set, naming brokerCallers', () => {
    const found = checkStage(settings({ environment: { BROKER_CALLERS_PARAMETER: '/broker/callers' } }));
    expect(found.errors).toEqual([
      expect.stringMatching(/^stage parameter brokerCallers: BROKER_CALLERS and BROKER_CALLERS_PARAMETER are both set/),
    ]);
  });

  it('warns about a missing tokenKeyAdminRoleArn and refuses it on a stage named like production', () => {
    const unset = { tokenKeyAdminRoleArn: '' };
    expect(checkStage(settings({ stage: 'staging', params: unset }))).toEqual({
      errors: [],
      warnings: [expect.stringMatching(/^stage parameter tokenKeyAdminRoleArn is not set: .*kms:PutKeyPolicy/)],
    });
    for (const stage of ['prod', 'production', 'live', 'eu-prod', 'prod_eu', 'PROD', 'live2']) {
      expect(checkStage(settings({ stage, params: unset })).errors, stage).toEqual([
        expect.stringMatching(
          new RegExp(`^stage "${stage}" looks like production and does not set tokenKeyAdminRoleArn: `),
        ),
      ]);
    }
    expect(checkStage(settings({ stage: 'prod' })).errors).toEqual([]);
  });

  it('reads production only from whole parts of the stage name', () => {
    expect(['prod', 'eu-live', 'production.1', 'prod3'].filter(looksLikeProduction)).toHaveLength(4);
    expect(['producer', 'olive', 'delivery', 'preprod', 'dev', 'ci'].filter(looksLikeProduction)).toEqual([]);
  });

  it('leaves the key admin alone when the stage brings its own key (this stack writes no key policy then)', () => {
    const params = { tokenKeyAdminRoleArn: '', existingTokenKmsKeyArn: 'arn:aws:kms:eu-west-1:111111111111:key/k' };
    expect(checkStage(settings({ stage: 'prod', params }))).toEqual({ errors: [], warnings: [] });
  });

  it('accepts tokenReservedConcurrency unset or a whole number of at least 1, and refuses anything else', () => {
    for (const value of [undefined, null, '', 1, '25', 500])
      expect(checkStage(settings({ params: { tokenReservedConcurrency: value } })).errors, String(value)).toEqual([]);
    expect(checkStage(settings({ params: { tokenReservedConcurrency: 0 } })).errors).toEqual([
      'stage parameter tokenReservedConcurrency must be a whole number of at least 1, or unset (no reservation): 0 would throttle every call of the token function',
    ]);
    for (const value of ['-1', '1.5', 'ten'])
      expect(checkStage(settings({ params: { tokenReservedConcurrency: value } })).errors, value).toHaveLength(1);
  });

  it('reports every problem it finds at once, one line each', () => {
    const { errors } = checkStage(
      settings({
        stage: 'live',
        tokenUrl: 'http://auth.limitrail.example/t',
        params: { tokenKeyAdminRoleArn: '', tokenReservedConcurrency: '0' },
      }),
    );
    expect(errors).toHaveLength(3);
    expect(findingsMessage('live', errors).split('\n')).toEqual([
      'stage "live" is refused: its configuration would not work as deployed (docs/configuration.md, "Checked at package time"):',
      ...errors.map((e) => `  - ${e}`),
    ]);
  });
});

describe('private_key_jwt clients and the stage signing key (infra/signing-check.ts)', () => {
  const KEY_A = 'arn:aws:kms:eu-west-1:111111111111:key/11111111-2222-3333-4444-555555555555';
  const KEY_B = 'arn:aws:kms:eu-west-1:111111111111:key/66666666-7777-8888-9999-000000000000';
  const STAGE_ALIAS = 'arn:aws:kms:eu-west-1:111111111111:alias/limitrail-token-broker-ci-upstream-signing';
  const partner = (auth: Record<string, unknown>) =>
    settings({
      clients: {
        partner: {
          authMethod: 'private_key_jwt',
          clientId: 'partner-id',
          tokenUrl: 'https://idp.example/oauth/token',
          scopes: ['api.read'],
          ...auth,
        },
      },
      grants: [],
      params: { invokePrincipals: '[]' },
    });
  const withKeys = (s: StageSettings, upstreamSigningKey: string, upstreamSigningAlgorithm = '') => ({
    ...s,
    params: { ...s.params, upstreamSigningKey, upstreamSigningAlgorithm },
  });
  const errors = (s: StageSettings) => checkStage(s).errors;
  const warnings = (s: StageSettings) => checkStage(s).warnings.filter((w) => w.includes('signingKeyId'));

  it('accepts a client that signs with the stage key (its alias), or with the first of the existing keys', () => {
    expect(errors(withKeys(partner({ signingKeyId: STAGE_ALIAS }), 'ECC_NIST_P256'))).toEqual([]);
    expect(warnings(withKeys(partner({ signingKeyId: STAGE_ALIAS }), 'ECC_NIST_P256'))).toEqual([]);
    expect(
      errors(
        withKeys(partner({ signingKeyId: [KEY_B, KEY_A], signingAlgorithm: 'PS256' }), `${KEY_A},${KEY_B}`, 'PS256'),
      ),
    ).toEqual([]);
  });

  it('refuses a private_key_jwt client on a stage without a signing key, naming upstreamSigningKey', () => {
    expect(errors(partner({ signingKeyId: KEY_A }))).toEqual([
      'stage parameter upstreamSigningKey is not set, but client "partner" uses private_key_jwt: the function roles may sign with no key, so every token request of it would fail (signing_key_unusable); set it to RSA_2048 or ECC_NIST_P256 (the stack creates the key) or to the key ARNs of its signingKeyId',
    ]);
  });

  it('refuses a signing key the roles may not use, and an algorithm they may not sign with', () => {
    expect(errors(withKeys(partner({ signingKeyId: [KEY_B, KEY_A] }), KEY_A, 'ES256'))).toEqual([
      `stage parameter brokerClients: BROKER_CLIENTS.partner.signingKeyId signs with "${KEY_B}", which is not one of the keys of upstreamSigningKey: the function roles may sign with those only`,
    ]);
    expect(errors(withKeys(partner({ signingKeyId: STAGE_ALIAS, signingAlgorithm: 'PS256' }), 'RSA_2048'))).toEqual([
      'stage parameter brokerClients: BROKER_CLIENTS.partner signs PS256, but upstreamSigningAlgorithm lets the function roles sign RS256 only',
    ]);
    expect(
      errors(withKeys(partner({ signingKeyId: STAGE_ALIAS.replace('ci-upstream', 'prod-upstream') }), 'RSA_2048')),
    ).toEqual([
      expect.stringContaining(
        "not the stage's key (alias arn:aws:kms:eu-west-1:<account>:alias/limitrail-token-broker-ci-upstream-signing)",
      ),
    ]);
    expect(errors(withKeys(partner({ signingKeyId: KEY_A }), 'HMAC_256'))).toEqual([
      expect.stringMatching(
        /^stage parameter upstreamSigningKey: parameter upstreamSigningKey must be RSA_2048 or ECC_NIST_P256/,
      ),
    ]);
  });

  it('warns where packaging cannot tell which key is meant (an alias of existing keys, a key ARN for the created key)', () => {
    expect(warnings(withKeys(partner({ signingKeyId: STAGE_ALIAS }), KEY_A, 'ES256'))).toEqual([
      expect.stringContaining(
        'names an alias: packaging cannot check it points at one of the keys of upstreamSigningKey',
      ),
    ]);
    expect(warnings(withKeys(partner({ signingKeyId: KEY_A }), 'ECC_NIST_P256'))).toEqual([
      expect.stringContaining('names a key ARN: packaging cannot check it is the key the stack creates'),
    ]);
  });
});
