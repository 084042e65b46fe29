/** Hashing helpers: hex SHA-256 (cache keys, token fingerprints, identity-proof keys). */
import { createHash } from 'node:crypto';

/** Hex SHA-256 of a string. */
export const sha256Hex = (text: string): string => createHash('sha256').update(text).digest('hex');
