import { describe, expect, it } from 'vitest';
import { integerSetting } from '../../../functions/lib/config/settings';

describe('integerSetting', () => {
  it('takes a blank value as unset: the default, not 0', () => {
    for (const blank of ['', ' ', '\t \n']) {
      expect(integerSetting({ SECRET_MAX_AGE_SEC: blank }, 'SECRET_MAX_AGE_SEC', 300, 0, 86_400)).toBe(300);
    }
    expect(integerSetting({ SECRET_MAX_AGE_SEC: ' 0 ' }, 'SECRET_MAX_AGE_SEC', 300, 0, 86_400)).toBe(0);
  });
});
