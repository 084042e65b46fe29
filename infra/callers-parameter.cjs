// Where the token function's callers come from: the stage parameter callersParameter (docs/configuration.md).
//   none (the default): from brokerCallers, in the function's environment (BROKER_CALLERS); a change is a deploy.
//   create: the stack creates the SSM String parameter /<service>/<stage>/callers, holding
//     {"callers": <brokerCallers>, "revoked": <revokedCallers>}; the function reads it (BROKER_CALLERS_PARAMETER)
//     every callersMaxAgeSec, so `aws ssm put-parameter` changes the callers without a deploy (docs/deploy.md).
//   a parameter name (/path/name): the function reads that existing parameter, which this stack does not manage.
// With a parameter, BROKER_CALLERS is empty (the broker refuses both at start), and the token function's role may
// ssm:GetParameter on that one parameter (infra/iam.yml, condition ReadsCallersParameter). In every mode the
// principals of brokerCallers get the Function URL permissions (infra/caller-access.cjs).
// serverless.yml reads each property below (`${file(infra/callers-parameter.cjs):brokerCallers}`); each is a plain
// string at package time, so `osls offline` (the local stage) needs no CloudFormation condition. A property that
// becomes an environment variable is named after the stage parameter it comes from (the package-time checks,
// infra/config-check.ts, name that parameter in their messages).
'use strict';

const NONE = 'none';
const CREATE = 'create';
/** An SSM parameter name: letters, digits, _.-/, a leading / for a hierarchy (AWS allows 1011 characters). */
const NAME = /^\/?[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/;
/** A Standard-tier parameter holds at most 4 KB. */
const MAX_STANDARD_BYTES = 4096;

const parseJson = (text, name) => {
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`parameter ${name} is not valid JSON`);
  }
};

/** The stage's mode and, with a parameter, its name. */
const source = async (resolveVariable) => {
  const mode = String(await resolveVariable('param:callersParameter')).trim();
  if (mode === NONE) return { mode };
  if (mode === CREATE) {
    const service = await resolveVariable('self:service');
    const stage = await resolveVariable('sls:stage');
    return { mode, name: `/${service}/${stage}/callers` };
  }
  if (!NAME.test(mode) || mode.length > 1011 || /^\/?(aws|ssm)/i.test(mode)) {
    throw new Error(
      `parameter callersParameter ${JSON.stringify(mode.slice(0, 128))} must be none, create or the name of an SSM ` +
        'parameter (letters, digits, _.-/; not starting with aws or ssm)',
    );
  }
  return { mode: 'existing', name: mode };
};

/** The created parameter's value: the stage's grants and revoked principals, compact. */
const initialValue = async (resolveVariable) => {
  const callers = parseJson(await resolveVariable('param:brokerCallers'), 'brokerCallers');
  const revoked = parseJson(await resolveVariable('param:revokedCallers'), 'revokedCallers');
  if (!Array.isArray(callers)) throw new Error('parameter brokerCallers must be a JSON array');
  if (!Array.isArray(revoked) || revoked.some((r) => typeof r !== 'string')) {
    throw new Error('parameter revokedCallers must be a JSON array of ARNs');
  }
  const value = JSON.stringify({ callers, revoked });
  if (Buffer.byteLength(value) > MAX_STANDARD_BYTES) {
    throw new Error(
      `the callers parameter would hold ${Buffer.byteLength(value)} bytes, more than a Standard SSM parameter's ` +
        `${MAX_STANDARD_BYTES}: create an Advanced parameter yourself and name it in callersParameter`,
    );
  }
  return value;
};

module.exports = {
  /** BROKER_CALLERS: the grants, unless they come from the parameter. */
  brokerCallers: async ({ resolveVariable }) =>
    (await source(resolveVariable)).mode === NONE ? resolveVariable('param:brokerCallers') : '',
  /** BROKER_CALLERS_PARAMETER: the parameter's name, or '' (none). */
  callersParameter: async ({ resolveVariable }) => (await source(resolveVariable)).name ?? '',
  /** The parameter's ARN after `:parameter` (always with a leading /), for the role policy; '' for none. */
  parameterPath: async ({ resolveVariable }) => {
    const { name } = await source(resolveVariable);
    return name === undefined ? '' : name.startsWith('/') ? name : `/${name}`;
  },
  /** The parameter the stack creates (create), as a CloudFormation template fragment; none otherwise. */
  resources: async ({ resolveVariable }) => {
    const { mode, name } = await source(resolveVariable);
    if (mode !== CREATE) return { Resources: {} };
    const service = await resolveVariable('self:service');
    const stage = await resolveVariable('sls:stage');
    return {
      Resources: {
        CallersParameter: {
          Type: 'AWS::SSM::Parameter',
          Properties: {
            Name: name,
            Type: 'String',
            Tier: 'Standard',
            Value: await initialValue(resolveVariable),
            Description: `${service} ${stage}: who may get which tokens, and who is revoked (docs/operations.md)`,
            Tags: { service, stage },
          },
        },
      },
    };
  },
};
