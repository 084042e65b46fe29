/**
 * The callers parameter (BROKER_CALLERS_PARAMETER) in moto's SSM: what a stage with `callersParameter: create` gets
 * from its stack, and what an operator changes with `aws ssm put-parameter` (docs/deploy.md). Set-up code for
 * `npm start`, `npm run revoke` and the tests, never part of the broker (which only reads it).
 */
import { GetParameterCommand, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';

/** The parameter's value: the grants of BROKER_CALLERS and the revoked principals' ARNs. */
export interface CallersValue {
  callers: unknown[];
  revoked?: string[];
}

export interface ParameterLocation {
  endpoint: string;
  region: string;
  name: string;
}

const client = ({ endpoint, region }: ParameterLocation) =>
  new SSMClient({ endpoint, region, credentials: { accessKeyId: 'test', secretAccessKey: 'test' }, maxAttempts: 1 });

/** Creates or overwrites the parameter (a String parameter, as the stack creates it); `text` as is when given. */
export const putCallersParameter = async (at: ParameterLocation, value: CallersValue | string): Promise<void> => {
  const ssm = client(at);
  try {
    await ssm.send(
      new PutParameterCommand({
        Name: at.name,
        Type: 'String',
        Overwrite: true,
        Value: typeof value === 'string' ? value : JSON.stringify(value),
      }),
    );
  } finally {
    ssm.destroy();
  }
};

/** The parameter's value, parsed. */
export const getCallersParameter = async (at: ParameterLocation): Promise<CallersValue> => {
  const ssm = client(at);
  try {
    const { Parameter } = await ssm.send(new GetParameterCommand({ Name: at.name }));
    return JSON.parse(Parameter?.Value ?? '{}') as CallersValue;
  } finally {
    ssm.destroy();
  }
};
