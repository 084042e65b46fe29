// Who may call the token function: one AWS::Lambda::Permission per principal, generated from the stage
// parameters (serverless.yml cannot loop over a list).
//   - invokePrincipals: lambda:InvokeFunction (direct invoke; every configured scope);
//   - the principals of the brokerCallers grants: lambda:InvokeFunctionUrl with FunctionUrlAuthType
//     AWS_IAM (the function then checks each caller's scopes against the grants).
// A principal is an IAM role or user ARN, an account id (or its :root ARN), or an organization id; an
// organization is expressed as Principal "*" with PrincipalOrgID, the only form Lambda accepts for it.
// Anything else fails the packaging, so a typo never deploys as a wider permission.
'use strict';
const { createHash } = require('node:crypto');

const ACCOUNT = /^\d{12}$/;
const ORG = /^o-[a-z0-9]{10,32}$/;
const IAM_ARN = /^arn:(aws|aws-cn|aws-us-gov):iam::\d{12}:(root|role\/[\x21-\x7E]+|user\/[\x21-\x7E]+)$/;

const principalProperties = (principal, where) => {
  if (typeof principal !== 'string') throw new Error(`${where} must be a string`);
  if (ACCOUNT.test(principal)) return { Principal: principal };
  if (ORG.test(principal)) return { Principal: '*', PrincipalOrgID: principal };
  if (IAM_ARN.test(principal)) return { Principal: principal };
  throw new Error(`${where} ${JSON.stringify(principal)} is not an IAM role or user ARN, an account id or an organization id`);
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

module.exports = async ({ resolveVariable }) => {
  const invokePrincipals = parseList(await resolveVariable('param:invokePrincipals'), 'invokePrincipals');
  const grants = parseList(await resolveVariable('param:brokerCallers'), 'brokerCallers');
  const urlPrincipals = [...new Set(grants.map((g, i) => (g && typeof g === 'object' ? g.principal : `brokerCallers[${i}]`)))];
  const Resources = {};
  for (const principal of new Set(invokePrincipals)) {
    Resources[logicalId('TokenInvokePermission', principal)] = {
      Type: 'AWS::Lambda::Permission',
      Properties: {
        Action: 'lambda:InvokeFunction',
        FunctionName: { 'Fn::GetAtt': ['TokenLambdaFunction', 'Arn'] },
        ...principalProperties(principal, 'invokePrincipals entry'),
      },
    };
  }
  for (const principal of urlPrincipals) {
    Resources[logicalId('TokenUrlPermission', principal)] = {
      Type: 'AWS::Lambda::Permission',
      Properties: {
        Action: 'lambda:InvokeFunctionUrl',
        FunctionName: { 'Fn::GetAtt': ['TokenLambdaFunction', 'Arn'] },
        FunctionUrlAuthType: 'AWS_IAM',
        ...principalProperties(principal, 'brokerCallers principal'),
      },
    };
  }
  return { Resources };
};
