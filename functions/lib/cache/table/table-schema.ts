/**
 * The token table's shape: one item per cache key. Shared by the DynamoDB adapter, the
 * infrastructure tests and local set-up, so the TTL attribute in serverless.yml and the one
 * the code writes cannot drift apart.
 */
export const TABLE_PARTITION_KEY = 'cacheKey';
/** Epoch seconds at which the token expires: the table's TTL attribute. */
export const TABLE_TTL_ATTRIBUTE = 'expiresAtEpochSec';
