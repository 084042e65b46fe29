/**
 * Every price the cost table of `npm run bench` (bench/cost.ts) uses, in US dollars, in one place: on-demand list
 * prices of US East (N. Virginia), without free tiers, savings plans or volume tiers. Other regions differ by a few
 * per cent to a few tens of per cent (the default stage deploys in eu-central-1): replace the figures with those of
 * your region and date from the pages named, then run the bench again.
 *
 * The figures as the pages named below publish them, written down on 2026-12-03 and checked then only against
 * secondary sources (this machine cannot reach the pricing pages): the two changes since 2024 are in (DynamoDB
 * on-demand halved on 1 November 2024; Cognito machine-to-machine token requests priced since 9 May 2024). Check
 * the pages before you quote a figure.
 */

/** A price and where it comes from. */
export interface Price {
  usd: number;
  /** What one unit is. */
  per: string;
  source: string;
}

/** https://aws.amazon.com/lambda/pricing/ : requests, any architecture. */
export const LAMBDA_REQUEST: Price = {
  usd: 0.2 / 1_000_000,
  per: 'request',
  source: 'aws.amazon.com/lambda/pricing ($0.20 per 1M requests)',
};

/** https://aws.amazon.com/lambda/pricing/ : duration on Graviton (arm64), first 7.5 billion GB-s a month. */
export const LAMBDA_GB_SECOND_ARM64: Price = {
  usd: 0.0000133334,
  per: 'GB-second',
  source: 'aws.amazon.com/lambda/pricing (Arm price, first tier)',
};

/** https://aws.amazon.com/lambda/pricing/ : duration on x86_64, first 6 billion GB-s a month. */
export const LAMBDA_GB_SECOND_X86_64: Price = {
  usd: 0.0000166667,
  per: 'GB-second',
  source: 'aws.amazon.com/lambda/pricing (x86 price, first tier)',
};

/** https://aws.amazon.com/dynamodb/pricing/on-demand/ : a read request unit (one strongly consistent read of up to 4 KB). */
export const DYNAMODB_READ_REQUEST_UNIT: Price = {
  usd: 0.125 / 1_000_000,
  per: 'read request unit',
  source: 'aws.amazon.com/dynamodb/pricing/on-demand ($0.125 per 1M RRU, since 2024-11-01)',
};

/** https://aws.amazon.com/dynamodb/pricing/on-demand/ : a write request unit (one write of up to 1 KB). */
export const DYNAMODB_WRITE_REQUEST_UNIT: Price = {
  usd: 0.625 / 1_000_000,
  per: 'write request unit',
  source: 'aws.amazon.com/dynamodb/pricing/on-demand ($0.625 per 1M WRU, since 2024-11-01)',
};

/** https://aws.amazon.com/kms/pricing/ : symmetric key requests (GenerateDataKey, Decrypt). The key itself is $1 a month. */
export const KMS_REQUEST: Price = {
  usd: 0.03 / 10_000,
  per: 'request',
  source: 'aws.amazon.com/kms/pricing ($0.03 per 10,000 requests)',
};

/** https://docs.aws.amazon.com/STS/latest/APIReference/welcome.html : STS has no charge (GetCallerIdentity included). */
export const STS_REQUEST: Price = {
  usd: 0,
  per: 'request',
  source: 'AWS STS is offered at no additional charge',
};

/** https://aws.amazon.com/secrets-manager/pricing/ : API calls. The secret itself is $0.40 a month. */
export const SECRETS_MANAGER_CALL: Price = {
  usd: 0.05 / 10_000,
  per: 'API call',
  source: 'aws.amazon.com/secrets-manager/pricing ($0.05 per 10,000 API calls)',
};

/**
 * An upstream token request (client_credentials). LimitRail publishes no per-request price; Amazon Cognito's
 * machine-to-machine price is the reference of a token endpoint that charges per token issued:
 * https://aws.amazon.com/cognito/pricing/ , first tier, plus $6 per app client a month (not per request).
 */
export const UPSTREAM_TOKEN_REQUEST: Price = {
  usd: 2.25 / 1_000,
  per: 'token request',
  source: 'aws.amazon.com/cognito/pricing (M2M: $2.25 per 1,000 token requests, since 2024-05-09)',
};
