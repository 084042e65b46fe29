import { describe, expect, it } from 'vitest';
import { describeAwsError, isUnavailable } from '../../../functions/lib/shared/aws-errors';

const sdkError = (name: string, httpStatusCode?: number) =>
  Object.assign(new Error(`${name}: the message may quote the request`), { name, $metadata: { httpStatusCode } });

describe('AWS errors read without their messages', () => {
  it('describes an error by name and HTTP status only, and a thrown non-error as Error', () => {
    expect(describeAwsError(sdkError('AccessDeniedException', 403))).toBe('AccessDeniedException (HTTP 403)');
    expect(describeAwsError(sdkError('TimeoutError'))).toBe('TimeoutError');
    expect(describeAwsError(undefined)).toBe('Error');
    expect(describeAwsError({ name: 42 })).toBe('Error');
  });

  it('counts network errors, throttling and 5xx as unavailable, and a refusal as not', () => {
    expect(isUnavailable(sdkError('TimeoutError'))).toBe(true);
    expect(isUnavailable(sdkError('InternalServerError', 500))).toBe(true);
    expect(isUnavailable(sdkError('ThrottlingException', 400))).toBe(true);
    expect(isUnavailable(sdkError('AccessDeniedException', 403))).toBe(false);
    expect(isUnavailable(sdkError('ResourceNotFoundException', 400))).toBe(false);
    expect(isUnavailable(sdkError('Odd', 499))).toBe(false);
  });
});
