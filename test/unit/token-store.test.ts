import { describe, expect, it } from 'vitest';
import { ITEM_FORMAT, type SealedFields, itemAad } from '../../functions/lib/cache/token-store';

const fields: SealedFields = {
  client: 'limitrail',
  scope: 'limitrail.usage.read limitrail.usage.write',
  issuedAtEpochSec: 1_795_932_000,
  expiresAtEpochSec: 1_795_935_600,
  refreshAtEpochSec: 1_795_934_700,
  reissued: false,
};

describe('additional authenticated data of a cached token', () => {
  it('changes with the cache key and with every field the broker decides on or answers with', () => {
    const edited: { [K in keyof SealedFields]: SealedFields[K] } = {
      client: 'billing',
      scope: 'limitrail.admin limitrail.usage.read limitrail.usage.write',
      issuedAtEpochSec: fields.issuedAtEpochSec + 1800,
      expiresAtEpochSec: fields.expiresAtEpochSec + 86_400,
      refreshAtEpochSec: fields.expiresAtEpochSec,
      reissued: true,
    };
    // Every stored field is covered: a field added to SealedFields fails here until it has an edit.
    expect(Object.keys(edited).sort()).toEqual(Object.keys(fields).sort());
    const original = itemAad('v1:key', fields);
    for (const name of Object.keys(edited) as (keyof SealedFields)[]) {
      expect(itemAad('v1:key', { ...fields, [name]: edited[name] }), name).not.toBe(original);
    }
    expect(itemAad('v1:another-key', fields)).not.toBe(original);
  });

  it('names the item format, and cannot be matched by moving text from one field into the next', () => {
    expect(itemAad('v1:key', fields)).toContain(`item-v${ITEM_FORMAT}`);
    expect(itemAad('v1:key', { ...fields, client: 'a', scope: 'b c' })).not.toBe(itemAad('v1:key', { ...fields, client: 'a b', scope: 'c' }));
  });
});
