/** Reading AWS SDK v3 errors without trusting their messages (which may quote requests). */
export interface AwsErrorFacts {
  name: string;
  httpStatus: number | undefined;
}

const THROTTLING = new Set([
  'ThrottlingException',
  'Throttling',
  'TooManyRequestsException',
  'ProvisionedThroughputExceededException',
  'RequestLimitExceeded',
  'LimitExceededException',
]);

export const awsErrorFacts = (err: unknown): AwsErrorFacts => {
  const e = err as { name?: unknown; $metadata?: { httpStatusCode?: unknown } } | undefined;
  const status = e?.$metadata?.httpStatusCode;
  return {
    name: typeof e?.name === 'string' ? e.name : 'Error',
    httpStatus: typeof status === 'number' ? status : undefined,
  };
};

/**
 * Whether the service is down, slow or throttling rather than refusing us: network errors and timeouts
 * (no HTTP status), throttling, and 5xx.
 */
export const isUnavailable = (err: unknown): boolean => {
  const { name, httpStatus } = awsErrorFacts(err);
  return httpStatus === undefined || httpStatus >= 500 || THROTTLING.has(name);
};

/** Short, safe description of an AWS error for logs and error descriptions: its name and status only. */
export const describeAwsError = (err: unknown): string => {
  const { name, httpStatus } = awsErrorFacts(err);
  return httpStatus === undefined ? name : `${name} (HTTP ${httpStatus})`;
};
