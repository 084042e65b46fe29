/**
 * Verifies checked identity proofs with STS (the I/O half of identity-proof.ts): sends the caller's signed
 * GetCallerIdentity request (what its signature covers, nothing else: identity-proof.ts), within the invocation's
 * deadline, and reads who signed it (sts-answer.ts). A verified identity is kept per container until its proof's
 * freshness window ends, keyed by a hash of what the signature covers (verified-identities.ts: least recently used
 * first, a cap per principal): one STS call per proof per container, however many requests reuse it or pad it with
 * unsigned headers; concurrent requests with one proof share one call. Failures are not kept.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Caller } from '../domain/caller';
import type { CheckedProof } from '../domain/proof';
import type { IdentityVerifier, Verification } from '../ports';
import type { Clock } from '../shared/clock';
import { UnavailableError } from '../shared/errors';
import { SingleFlight } from '../shared/single-flight';
import { interpretStsAnswer, type StsAnswer } from './sts-answer';
import { VerifiedIdentities } from './verified-identities';

/** Sends one request to STS and reads the answer (bounded); rejects on network errors and timeouts. */
export type StsTransport = (proof: CheckedProof, timeoutMs: number) => Promise<StsAnswer>;

/** Longest wait for STS; the invocation's deadline may cut it shorter. */
export const STS_TIMEOUT_MS = 3_000;
const MAX_ANSWER_BYTES = 16 * 1024;
/** What the broker sends unless the caller signed its own: a form body, and STS's XML answer. */
const CONTENT_TYPE = 'application/x-www-form-urlencoded; charset=utf-8';
const ACCEPT = 'text/xml';

export class StsIdentityVerifier implements IdentityVerifier {
  readonly #verified: VerifiedIdentities;
  readonly #inFlight = new SingleFlight<string, Caller>();

  constructor(
    private readonly clock: Clock,
    private readonly transport: StsTransport = sendToSts,
    verified = new VerifiedIdentities(),
  ) {
    this.#verified = verified;
  }

  async verify(proof: CheckedProof, deadlineMs: number): Promise<Verification> {
    const nowMs = this.clock.nowMs();
    const cached = this.#verified.get(proof.key, nowMs);
    if (cached) return { identity: cached, source: 'cached' };
    if (this.#inFlight.has(proof.key)) {
      // Another request with this proof is asking STS: share its answer, but only within this request's own deadline.
      return {
        identity: await withinDeadline(this.#inFlight.run(proof.key, never), deadlineMs - nowMs),
        source: 'cached',
      };
    }
    const identity = await this.#inFlight.run(proof.key, async () => {
      const timeoutMs = Math.min(STS_TIMEOUT_MS, deadlineMs - this.clock.nowMs());
      if (timeoutMs <= 0)
        throw new UnavailableError('no time left to verify the identity proof with STS', 'sts_unavailable');
      const answer = await this.transport(proof, timeoutMs);
      const proven = interpretStsAnswer(answer);
      this.#verified.set(proof.key, proven, proof.validUntilMs, this.clock.nowMs());
      return proven;
    });
    return { identity, source: 'verified' };
  }
}

const never = (): Promise<Caller> => Promise.reject(new Error('unreachable: joined an in-flight verification'));

/** `pending`, or temporarily_unavailable once `budgetMs` has passed (it keeps running for whoever started it). */
const withinDeadline = <T>(pending: Promise<T>, budgetMs: number): Promise<T> => {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new UnavailableError(
            "STS did not verify the identity proof within this invocation's time",
            'sts_unavailable',
          ),
        ),
      Math.max(0, budgetMs),
    );
  });
  return Promise.race([pending, late]).finally(() => clearTimeout(timer));
};

/** The real transport: node:https (node:http only for a local AWS_ENDPOINT_URL_STS), no redirects, bounded. */
export const sendToSts: StsTransport = (proof, timeoutMs) =>
  new Promise<StsAnswer>((resolve, reject) => {
    const url = new URL(proof.url);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const body = Buffer.from(proof.body);
    const fail = (description: string) => new UnavailableError(description, 'sts_unavailable');
    const req = send(
      url,
      {
        method: 'POST',
        headers: {
          'content-type': CONTENT_TYPE,
          accept: ACCEPT,
          ...proof.headers,
          host: url.host,
          'content-length': String(body.length),
        },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let bytes = 0;
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          if (bytes > MAX_ANSWER_BYTES) {
            req.destroy();
            reject(fail('STS answered more than 16 KiB'));
          } else chunks.push(chunk);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, bodyText: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', () => reject(fail('STS closed the connection mid-answer')));
      },
    );
    const timer = setTimeout(() => req.destroy(new Error('timeout')), timeoutMs);
    req.on('close', () => clearTimeout(timer));
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err: NodeJS.ErrnoException) =>
      reject(
        fail(
          err.message === 'timeout'
            ? `STS did not answer within ${timeoutMs} ms`
            : `STS could not be reached${/^E[A-Z]+$/.test(err.code ?? '') ? ` (${err.code})` : ''}`,
        ),
      ),
    );
    req.end(body);
  });
