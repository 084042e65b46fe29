/**
 * Identity proofs as the rest of the code sees them: where proofs may go and whom they must name (ProofPolicy, from
 * the configuration), and a proof that passed every local check (CheckedProof, made by callers/identity-proof.ts).
 */

export type Partition = 'aws' | 'aws-cn' | 'aws-us-gov';

/** The partition of a region: account ids are unique only within one, so proofs stay in the broker's own. */
export const partitionOf = (region: string | undefined): Partition =>
  region?.startsWith('cn-') ? 'aws-cn' : region?.startsWith('us-gov-') ? 'aws-us-gov' : 'aws';

/** Where proofs may be sent and who they must be made for. */
export interface ProofPolicy {
  /** This broker's audience: the value the signed audience header must have. */
  readonly audience: string;
  /** The origin of AWS_ENDPOINT_URL_STS when set: then the only place a proof may go. */
  readonly stsOrigin: string | undefined;
  /** The broker's partition (from AWS_REGION): only its STS endpoints are accepted. */
  readonly partition: Partition;
}

/** A proof that passed every local check: safe to send to STS. */
export interface CheckedProof {
  readonly url: string;
  /**
   * The headers sent to STS, names lowercased: Authorization, the signed ones (less `host` and `content-length`, which
   * the broker sets) and `x-amz-security-token`. None the signature does not cover (callers/identity-proof.ts).
   */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  /** Until when a verified identity may be reused: the end of the proof's freshness window. */
  readonly validUntilMs: number;
  /**
   * The key of the verified-identity cache: a hash of what the signature covers (access key id, credential scope,
   * signature, signed header values, URL, body) and the session token; no unsigned header.
   */
  readonly key: string;
}

/** The origin a proof must go to when AWS_ENDPOINT_URL_STS is set; undefined when unset or unusable. */
export const stsOriginFrom = (endpointUrl: string | undefined): string | undefined => {
  if (endpointUrl === undefined || endpointUrl.trim() === '') return undefined;
  try {
    return new URL(endpointUrl.trim()).origin;
  } catch {
    return undefined;
  }
};
