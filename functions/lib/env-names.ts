/** Environment variables the broker reads (once per container, in config.ts). */
export const ENV = {
  tableName: 'TOKEN_TABLE_NAME',
  clients: 'BROKER_CLIENTS',
  kmsKeyId: 'TOKEN_KMS_KEY_ID',
} as const;
