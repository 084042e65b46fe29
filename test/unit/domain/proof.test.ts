import { describe, expect, it } from 'vitest';
import { partitionOf, stsOriginFrom } from '../../../functions/lib/domain/proof';

describe('proof policy parts', () => {
  it('knows the partition of a region: China, GovCloud, and aws for the rest or none', () => {
    expect(partitionOf('cn-north-1')).toBe('aws-cn');
    expect(partitionOf('us-gov-west-1')).toBe('aws-us-gov');
    expect(partitionOf('us-east-1')).toBe('aws');
    expect(partitionOf(undefined)).toBe('aws');
  });

  it('takes the origin of AWS_ENDPOINT_URL_STS, trimmed, and none when it is unset, blank or not a URL', () => {
    expect(stsOriginFrom(' http://127.0.0.1:4566/path \n')).toBe('http://127.0.0.1:4566');
    expect(stsOriginFrom(undefined)).toBeUndefined();
    expect(stsOriginFrom('   ')).toBeUndefined();
    expect(stsOriginFrom('not a url')).toBeUndefined();
  });
});
