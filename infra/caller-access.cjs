// Who may call the token function: AWS::Lambda::Permission resources generated from the stage parameters
// (serverless.yml cannot loop over a list).
//   - invokePrincipals: lambda:InvokeFunction (direct invoke). Only the permission to invoke: in callerAuth
//     `grants` mode the scopes come from brokerCallers, in `invoke-permission` mode from the client's config;
//   - the principals of the brokerCallers grants: the two permissions AWS requires for a Function URL call,
//     lambda:InvokeFunctionUrl with FunctionUrlAuthType AWS_IAM, and lambda:InvokeFunction with
//     InvokedViaFunctionUrl, which allows no direct invoke (the function then checks each caller's scopes
//     against the grants).
// A principal is an IAM role or user ARN, an account id (or its :root ARN), or an organization id; an
// organization is expressed as Principal "*" with PrincipalOrgID, the only form Lambda accepts for it.
// In `grants` mode an organization grant fails the packaging: an identity proof names an account and a
// principal, never an organization, so the broker would refuse it at cold start.
// Anything else fails the packaging, so a typo never deploys as a wider permission.
'use strict';
const { createHash } = require('node:crypto');

const ACCOUNT = /^\d{12}$/;
const ORG = /^o-[a-z0-9]{10,32}$/;
const IAM_ARN = /^arn:(aws|aws-cn|aws-us-gov):iam::\d{12}:(root|role\/[\x21-\x7E]+|user\/[\x21-\x7E]+)$/;
const CALLER_AUTH_MODES = ['grants', 'invoke-permission'];

const principalProperties = (principal, where) => {
  if (typeof principal !== 'string') throw new Error(`${where} must be a string`);
  if (ACCOUNT.test(principal)) return { Principal: principal };
  if (ORG.test(principal)) return { Principal: '*', PrincipalOrgID: principal };
  if (IAM_ARN.test(principal)) return { Principal: principal };
  throw new Error(
    `${where} ${JSON.stringify(principal)} is not an IAM role or user ARN, an account id or an organization id`,
  );
};

const parseList = (text, name) => {
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`parameter ${name} is not valid JSON`);
  }
  if (!Array.isArray(value)) throw new Error(`parameter ${name} must be a JSON array`);
  return value;
};

const logicalId = (prefix, principal) =>
  `${prefix}${createHash('sha256').update(principal).digest('hex').slice(0, 12)}`;

const tokenFunction = () => ({ 'Fn::GetAtt': ['TokenLambdaFunction', 'Arn'] });

module.exports = async ({ resolveVariable }) => {
  const callerAuth = await resolveVariable('param:callerAuth');
  if (!CALLER_AUTH_MODES.includes(callerAuth)) {
    throw new Error(
      `parameter callerAuth ${JSON.stringify(callerAuth)} must be one of ${CALLER_AUTH_MODES.join(', ')}`,
    );
  }
  const invokePrincipals = parseList(await resolveVariable('param:invokePrincipals'), 'invokePrincipals');
  const grants = parseList(await resolveVariable('param:brokerCallers'), 'brokerCallers');
  const urlPrincipals = [
    ...new Set(grants.map((g, i) => (g && typeof g === 'object' ? g.principal : `brokerCallers[${i}]`))),
  ];
  if (callerAuth === 'grants') {
    for (const principal of urlPrincipals) {
      if (typeof principal === 'string' && ORG.test(principal)) {
        throw new Error(
          `brokerCallers principal ${JSON.stringify(principal)} is an organization id, which callerAuth "grants" refuses ` +
            '(an identity proof names an account and a principal, never an organization): grant the account ids instead',
        );
      }
    }
  }
  const Resources = {};
  for (const principal of new Set(invokePrincipals)) {
    Resources[logicalId('TokenInvokePermission', principal)] = {
      Type: 'AWS::Lambda::Permission',
      Properties: {
        Action: 'lambda:InvokeFunction',
        FunctionName: tokenFunction(),
        ...principalProperties(principal, 'invokePrincipals entry'),
      },
    };
  }
  for (const principal of urlPrincipals) {
    const who = principalProperties(principal, 'brokerCallers principal');
    Resources[logicalId('TokenUrlPermission', principal)] = {
      Type: 'AWS::Lambda::Permission',
      Properties: {
        Action: 'lambda:InvokeFunctionUrl',
        FunctionName: tokenFunction(),
        FunctionUrlAuthType: 'AWS_IAM',
        ...who,
      },
    };
    Resources[logicalId('TokenUrlInvokePermission', principal)] = {
      Type: 'AWS::Lambda::Permission',
      Properties: {
        Action: 'lambda:InvokeFunction',
        FunctionName: tokenFunction(),
        InvokedViaFunctionUrl: true,
        ...who,
      },
    };
  }
  return { Resources };
};
