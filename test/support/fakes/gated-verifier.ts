/**
 * STS as a gate, for tests that need many invocations in flight at once: armed for n verifications, it holds each
 * until the n-th arrives, then releases them all together; disarmed, it answers at once. A proof's caller is the role
 * session its access key id names (`ASIA`, BILL or NOGR for the role, then a number), so an audit line's `caller`
 * says which request wrote it, whatever else the line claims.
 */
import { type IdentityProof, signIdentityProof } from '@limitrail/token-broker-client';
import type { CheckedProof } from '../../../functions/lib/domain/proof';
import type { IdentityVerifier, Verification } from '../../../functions/lib/ports';

export const GATE_ACCOUNT = '111111111111';
export type GateRole = 'billing' | 'nogrant';

const accessKeyOf = (role: GateRole, n: number) =>
  `ASIA${role === 'billing' ? 'BILL' : 'NOGR'}${String(n).padStart(12, '0')}`;
export const sessionArn = (role: GateRole, n: number) => `arn:aws:sts::${GATE_ACCOUNT}:assumed-role/${role}/s${n}`;
/** The number of the session an audit line's caller names, if it names one. */
export const sessionNumber = (arn: unknown): string | undefined =>
  typeof arn === 'string' ? /:assumed-role\/\w+\/s(\d+)$/.exec(arn)?.[1] : undefined;

/** A proof signed as session number `n` of `role`, for `audience` (STS never sees it: the gate answers). */
export const gateProof = (role: GateRole, n: number, audience: string): Promise<IdentityProof> =>
  signIdentityProof({
    credentials: { accessKeyId: accessKeyOf(role, n), secretAccessKey: 'not-checked', sessionToken: 'session' },
    region: 'us-east-1',
    audience,
    stsUrl: 'https://sts.us-east-1.amazonaws.com/',
  });

export class GatedVerifier implements IdentityVerifier {
  #expected = 0;
  #arrived = 0;
  #open: () => void = () => undefined;
  #opened: Promise<void> = Promise.resolve();
  /** How many verifications were held at once when the gate opened. */
  heldAtOnce = 0;

  arm(n: number): void {
    this.#expected = n;
    this.#arrived = 0;
    this.heldAtOnce = 0;
    this.#opened = new Promise((resolve) => (this.#open = resolve));
  }

  async verify(proof: CheckedProof): Promise<Verification> {
    this.#arrived += 1;
    if (this.#arrived === this.#expected) {
      this.heldAtOnce = this.#arrived;
      this.#open();
    }
    await this.#opened;
    const key = /Credential=ASIA(BILL|NOGR)(\d{12})\//.exec(proof.headers.authorization ?? '');
    if (!key) throw new Error('a proof without a gate access key');
    const role: GateRole = key[1] === 'BILL' ? 'billing' : 'nogrant';
    return {
      identity: { arn: sessionArn(role, Number(key[2])), accountId: GATE_ACCOUNT, principalOrgId: undefined },
      source: 'verified',
    };
  }
}
