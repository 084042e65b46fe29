import { describe, expect, it } from 'vitest';
import { interpretStsAnswer } from '../../../functions/lib/callers/sts-answer';
import { BrokerError } from '../../../functions/lib/shared/errors';

/**
 * Reading STS's answer at its edges: which statuses can prove an identity, which refusals are the caller's (403) and
 * which STS's (503), and what of STS's error code is kept. (The usual answers: identity-proof.test.ts.)
 */
const ARN = 'arn:aws:iam::111111111111:user/ci';
const result = (inside: string) =>
  `<GetCallerIdentityResponse><GetCallerIdentityResult>${inside}</GetCallerIdentityResult></GetCallerIdentityResponse>`;
const OK = result(`<Arn>${ARN}</Arn><Account>111111111111</Account>`);

/** `arn` of the identity proven, or `status reason: description` of the refusal. */
const read = (status: number, bodyText: string) => {
  try {
    return interpretStsAnswer({ status, bodyText }).arn;
  } catch (err) {
    if (!(err instanceof BrokerError)) throw err;
    return `${err.status} ${err.reason}: ${err.message}`;
  }
};

describe("STS's status", () => {
  it.each([100, 199, 300, 302, 0])('proves nobody with HTTP %i, whatever the body says', (status) => {
    expect(read(status, OK)).toBe(`503 sts_unavailable: STS could not verify the identity proof (HTTP ${status})`);
  });

  it('proves the identity with HTTP 200 and 299', () => {
    expect(read(200, OK)).toBe(ARN);
    expect(read(299, OK)).toBe(ARN);
  });

  it('reads HTTP 400 without a throttling code as a refusal of the proof (403), HTTP 500 as STS failing (503)', () => {
    expect(read(400, '')).toBe('403 proof_refused_by_sts: identity proof refused by STS (HTTP 400)');
    expect(read(499, '<Error><Code>InvalidAction</Code></Error>')).toBe(
      '403 proof_refused_by_sts: identity proof refused by STS (HTTP 499, InvalidAction)',
    );
    expect(read(500, '')).toBe('503 sts_unavailable: STS could not verify the identity proof (HTTP 500)');
  });
});

describe('where the identity is read', () => {
  it('reads values around which the XML has whitespace', () => {
    expect(read(200, result(`<Arn>\n  ${ARN}\n</Arn><Account> 111111111111 </Account>`))).toBe(ARN);
  });

  it.each([
    [
      'a second Arn element that holds markup',
      result(`<Arn>${ARN}</Arn><Arn><b/></Arn><Account>111111111111</Account>`),
    ],
    ['an Arn element left open', result(`<Arn>${ARN}</Arn><Account>111111111111</Account><Arn>`)],
    ['a second result left open', `${OK}<GetCallerIdentityResult>`],
    [
      'a result opened inside the result',
      result(`<GetCallerIdentityResult><Arn>${ARN}</Arn><Account>111111111111</Account>`),
    ],
    ['a result never closed', `<GetCallerIdentityResult><Arn>${ARN}</Arn><Account>111111111111</Account>`],
  ])('proves nobody from an answer with %s', (_, bodyText) => {
    expect(read(200, bodyText)).toBe('503 sts_malformed_answer: STS answered without a usable identity');
  });
});

describe("STS's error code", () => {
  it.each([
    ['XML', '<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>', 'Throttling'],
    [
      'XML, with whitespace',
      '<ErrorResponse><Error><Code>\n  Throttling\n</Code></Error></ErrorResponse>',
      'Throttling',
    ],
    ['JSON Error.Code', JSON.stringify({ Error: { Code: 'Throttling', Message: 'slow down' } }), 'Throttling'],
    ['JSON __type', JSON.stringify({ __type: 'ThrottlingException', message: 'slow down' }), 'ThrottlingException'],
  ])('reads a throttling code in %s as STS being unavailable (503), even with HTTP 400', (_, bodyText, code) => {
    expect(read(400, bodyText)).toBe(
      `503 sts_unavailable: STS could not verify the identity proof (HTTP 400, ${code})`,
    );
  });

  it('names the code of a JSON refusal', () => {
    expect(read(403, JSON.stringify({ Error: { Code: 'SignatureDoesNotMatch', Message: 'Signature=abc' } }))).toBe(
      '403 proof_refused_by_sts: identity proof refused by STS (HTTP 403, SignatureDoesNotMatch)',
    );
    expect(read(403, JSON.stringify({ __type: 'ExpiredTokenException', message: 'expired' }))).toBe(
      '403 proof_refused_by_sts: identity proof refused by STS (HTTP 403, ExpiredTokenException)',
    );
  });

  it.each([
    ['with a space', 'Signature DoesNotMatch'],
    ['with a quote', 'Signature"DoesNotMatch'],
    ['of 65 characters', 'A'.repeat(65)],
  ])('keeps no code %s, neither in XML nor in JSON', (_, code) => {
    const refused = '403 proof_refused_by_sts: identity proof refused by STS (HTTP 403)';
    expect(read(403, `<Error><Code>${code}</Code></Error>`)).toBe(refused);
    expect(read(403, JSON.stringify({ Error: { Code: code } }))).toBe(refused);
  });

  it('keeps a code of 64 characters', () => {
    const code = `A${'b'.repeat(62)}Z`;
    expect(read(403, `<Error><Code>${code}</Code></Error>`)).toBe(
      `403 proof_refused_by_sts: identity proof refused by STS (HTTP 403, ${code})`,
    );
  });
});
