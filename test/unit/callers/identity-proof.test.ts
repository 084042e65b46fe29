import { signIdentityProof } from '@limitrail/token-broker-client';
import { describe, expect, it } from 'vitest';
import { checkIdentityProof } from '../../../functions/lib/callers/identity-proof';
import { interpretStsAnswer } from '../../../functions/lib/callers/sts-answer';
import { type ProofPolicy, partitionOf } from '../../../functions/lib/domain/proof';
import { BrokerError } from '../../../functions/lib/shared/errors';

/** The decisions on identity proofs, with a fixed clock and, for the verifier, a fake STS transport. */
const NOW = Date.parse('2026-11-29T08:00:00Z');
const AWS: ProofPolicy = { audience: 'broker-prod-token', stsOrigin: undefined, partition: 'aws' };
const credentials = { accessKeyId: 'ASIAEXAMPLEEXAMPLE01', secretAccessKey: 'secret', sessionToken: 'session' };

const proof = (stsUrl: string, region = 'eu-central-1', audience = AWS.audience) =>
  signIdentityProof({ credentials, region, audience, stsUrl, signingDate: new Date(NOW) });

const outcome = (fn: () => unknown) => {
  try {
    fn();
    return 'accepted';
  } catch (err) {
    return err instanceof BrokerError ? `${err.status} ${err.reason}` : `threw ${String(err)}`;
  }
};

describe('where a proof may be sent', () => {
  it.each([
    ['https://sts.amazonaws.com/', 'accepted'],
    ['https://sts.eu-central-1.amazonaws.com/', 'accepted'],
    ['https://sts-fips.us-east-1.amazonaws.com/', 'accepted'],
    // Another partition's STS: its account ids are another namespace, so a commercial broker never asks it.
    ['https://sts-fips.us-gov-west-1.amazonaws.com/', '403 proof_not_sts'],
    ['https://sts.cn-north-1.amazonaws.com.cn/', '403 proof_not_sts'],
    ['https://STS.EU-CENTRAL-1.AMAZONAWS.COM/', 'accepted'],
    ['http://sts.eu-central-1.amazonaws.com/', '403 proof_not_sts'],
    ['https://sts.eu-central-1.amazonaws.com:8443/', '403 proof_not_sts'],
    ['https://sts.eu-central-1.amazonaws.com.evil.example/', '403 proof_not_sts'],
    ['https://evil.example/?sts.amazonaws.com', '403 proof_not_sts'],
    ['https://sts.amazonaws.com/other', '403 proof_not_sts'],
    ['https://sts.amazonaws.com/?Action=GetCallerIdentity', '403 proof_not_sts'],
    ['https://user:pw@sts.amazonaws.com/', '403 proof_not_sts'],
    ['https://iam.amazonaws.com/', '403 proof_not_sts'],
    ['http://169.254.169.254/', '403 proof_not_sts'],
    ['http://127.0.0.1:9001/', '403 proof_not_sts'],
  ])('%s: %s', async (url, expected) => {
    const raw = await proof('https://sts.eu-central-1.amazonaws.com/');
    raw.url = url;
    raw.headers.host = new URL(url).host;
    expect(outcome(() => checkIdentityProof(raw, AWS, NOW))).toBe(expected);
  });

  it('accepts only the AWS_ENDPOINT_URL_STS origin when that is set, and no AWS host then', async () => {
    const local: ProofPolicy = { audience: AWS.audience, stsOrigin: 'http://127.0.0.1:5000', partition: 'aws' };
    const raw = await proof('http://127.0.0.1:5000/');
    expect(outcome(() => checkIdentityProof(raw, local, NOW))).toBe('accepted');
    const aws = await proof('https://sts.eu-central-1.amazonaws.com/');
    expect(outcome(() => checkIdentityProof(aws, local, NOW))).toBe('403 proof_not_sts');
    const otherPort = await proof('http://127.0.0.1:5001/');
    expect(outcome(() => checkIdentityProof(otherPort, local, NOW))).toBe('403 proof_not_sts');
  });
});

describe('partitions', () => {
  it.each([
    ['us-gov-west-1', 'https://sts-fips.us-gov-west-1.amazonaws.com/', 'accepted'],
    ['us-gov-west-1', 'https://sts.us-gov-east-1.amazonaws.com/', 'accepted'],
    ['us-gov-west-1', 'https://sts.amazonaws.com/', '403 proof_not_sts'],
    ['cn-north-1', 'https://sts.cn-northwest-1.amazonaws.com.cn/', 'accepted'],
    ['cn-north-1', 'https://sts.eu-central-1.amazonaws.com/', '403 proof_not_sts'],
    ['eu-central-1', 'https://sts.cn-north-1.amazonaws.com.cn/', '403 proof_not_sts'],
  ])('a broker in %s sends a proof for %s: %s', async (region, url, expected) => {
    const raw = await proof('https://sts.eu-central-1.amazonaws.com/');
    raw.url = url;
    raw.headers.host = new URL(url).host;
    expect(outcome(() => checkIdentityProof(raw, { ...AWS, partition: partitionOf(region) }, NOW))).toBe(expected);
  });
});

describe('what a proof must say', () => {
  it('accepts a fresh proof for this audience, in both body orders, and dates it', async () => {
    const raw = await proof('https://sts.eu-central-1.amazonaws.com/');
    const checked = checkIdentityProof(raw, AWS, NOW);
    expect(checked.validUntilMs).toBe(NOW + 5 * 60_000);
    expect(checkIdentityProof({ ...raw, body: 'Version=2011-06-15&Action=GetCallerIdentity' }, AWS, NOW).key).not.toBe(
      checked.key,
    );
  });

  it.each([
    ['4:59 old', NOW + 299_000, 'accepted'],
    ['5:01 old', NOW + 301_000, '403 proof_expired'],
    ['59 s ahead', NOW - 59_000, 'accepted'],
    ['61 s ahead', NOW - 61_000, '403 proof_from_future'],
  ])('a proof signed %s: %s', async (_name, nowMs, expected) => {
    const raw = await proof('https://sts.eu-central-1.amazonaws.com/');
    expect(outcome(() => checkIdentityProof(raw, AWS, nowMs))).toBe(expected);
  });

  it.each([
    [
      'another audience',
      (p: Proof) => (p.headers['x-limitrail-broker-audience'] = 'broker-dev-token'),
      '403 proof_wrong_audience',
    ],
    ['no audience header', (p: Proof) => delete p.headers['x-limitrail-broker-audience'], '403 proof_wrong_audience'],
    [
      'an unsigned audience header',
      (p: Proof) => (p.headers.authorization = p.headers.authorization!.replace(';x-limitrail-broker-audience', '')),
      '403 proof_audience_unsigned',
    ],
    ['no authorization', (p: Proof) => delete p.headers.authorization, '403 proof_unsigned'],
    [
      'a signature for another service',
      (p: Proof) => (p.headers.authorization = p.headers.authorization!.replace('/sts/', '/iam/')),
      '403 proof_not_sts',
    ],
    [
      'another action',
      (p: Proof) => (p.body = 'Action=AssumeRole&Version=2011-06-15'),
      '403 proof_not_get_caller_identity',
    ],
    [
      'an extra parameter',
      (p: Proof) => (p.body = 'Action=GetCallerIdentity&Version=2011-06-15&X=1'),
      '403 proof_not_get_caller_identity',
    ],
    [
      'a host header for another host',
      (p: Proof) => (p.headers.host = 'sts.us-east-1.amazonaws.com'),
      '403 proof_not_sts',
    ],
    ['a header with a line break', (p: Proof) => (p.headers['x-amz-date'] += '\r\nx: y'), '400 proof_malformed'],
    [
      'too many headers',
      (p: Proof) => Array.from({ length: 30 }, (_, i) => (p.headers[`x-h${i}`] = 'v')),
      '400 proof_malformed',
    ],
    [
      'a header that is not a string',
      (p: Proof) => ((p.headers as Record<string, unknown>)['x-n'] = 1),
      '400 proof_malformed',
    ],
    ['an extra field', (p: Proof) => ((p as unknown as Record<string, unknown>).extra = 1), '400 proof_malformed'],
  ])('refuses %s', async (_name, change, expected) => {
    const raw = await proof('https://sts.eu-central-1.amazonaws.com/');
    change(raw);
    expect(outcome(() => checkIdentityProof(raw, AWS, NOW))).toBe(expected);
  });

  it.each([null, 'text', 42, [], { url: 1 }, { url: 'https://sts.amazonaws.com/', headers: [], body: '' }])(
    'answers %j with a 400, never another exception',
    (raw) => {
      expect(outcome(() => checkIdentityProof(raw, AWS, NOW))).toMatch(/^40[03] /);
    },
  );
});
type Proof = Awaited<ReturnType<typeof proof>>;

describe('what a refusal says', () => {
  const refusal = (raw: unknown, policy = AWS) => {
    try {
      checkIdentityProof(raw, policy, NOW);
    } catch (err) {
      return `${(err as BrokerError).reason}: ${(err as Error).message}`;
    }
    return 'accepted';
  };
  const auth = (p: Proof, change: (value: string) => string) => {
    p.headers.authorization = change(p.headers.authorization!);
  };

  it('names an unsupported access key id format, not a missing signature, for a placeholder key such as "test"', async () => {
    const raw = await signIdentityProof({
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      region: 'us-east-1',
      audience: AWS.audience,
      stsUrl: 'https://sts.us-east-1.amazonaws.com/',
      signingDate: new Date(NOW),
    });
    const said = refusal(raw);
    expect(said).toMatch(
      /^proof_unsigned: identity proof refused: its access key id has an unsupported format \(4 characters\)/,
    );
    expect(said).not.toContain('no Authorization header');
  });

  it.each([
    ['no Authorization header', (p: Proof) => delete p.headers.authorization, 'it has no Authorization header'],
    [
      'another scheme',
      (p: Proof) => auth(p, (a) => a.replace('AWS4-HMAC-SHA256', 'AWS4-ECDSA-P256-SHA256')),
      'is not a SigV4 signature',
    ],
    [
      'a missing Signature part',
      (p: Proof) => auth(p, (a) => a.replace(/, ?Signature=.*$/, '')),
      'is not "AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…"',
    ],
    [
      'a credential scope without aws4_request',
      (p: Proof) => auth(p, (a) => a.replace('/aws4_request', '')),
      'Credential is not <access key id>/<yyyymmdd>/<region>/<service>/aws4_request',
    ],
    [
      'upper-case signed header names',
      (p: Proof) => auth(p, (a) => a.replace('SignedHeaders=', 'SignedHeaders=X-')),
      'SignedHeaders is not a list of lowercase header names',
    ],
    [
      'a short signature',
      (p: Proof) => auth(p, (a) => a.replace(/Signature=([0-9a-f]{64})/, 'Signature=abc')),
      'Signature is not 64 hexadecimal digits',
    ],
    [
      'host and x-amz-date not signed',
      (p: Proof) => auth(p, (a) => a.replace(/SignedHeaders=[^,]+/, 'SignedHeaders=x-limitrail-broker-audience')),
      'does not cover the host and x-amz-date headers',
    ],
    ['no x-amz-date header', (p: Proof) => delete p.headers['x-amz-date'], 'it has no x-amz-date header'],
    ['an x-amz-date that is no time', (p: Proof) => (p.headers['x-amz-date'] = 'yesterday'), 'is not a time such as'],
    [
      'an x-amz-date on another day than the credential scope',
      (p: Proof) => (p.headers['x-amz-date'] = '20261128T235959Z'),
      'is not on the date of its Credential scope',
    ],
    [
      'no audience header',
      (p: Proof) => delete p.headers['x-limitrail-broker-audience'],
      'it has no x-limitrail-broker-audience header: sign it for audience "broker-prod-token"',
    ],
    [
      'another audience',
      (p: Proof) => (p.headers['x-limitrail-broker-audience'] = 'broker-dev-token'),
      'does not name this broker: sign it for audience "broker-prod-token"',
    ],
    [
      'a path after the STS host',
      (p: Proof) => (p.url = 'https://sts.eu-central-1.amazonaws.com/other'),
      "is not an AWS STS endpoint's root",
    ],
    [
      'a host that is not STS',
      (p: Proof) => {
        p.url = 'https://evil.example/';
        p.headers.host = 'evil.example';
      },
      "is not an AWS STS endpoint of this broker's partition (https://sts.<region>.amazonaws.com/)",
    ],
  ])('%s: says so', async (_name, change, said) => {
    const raw = await proof('https://sts.eu-central-1.amazonaws.com/');
    change(raw);
    expect(refusal(raw)).toContain(said);
  });

  it('names the one STS origin a local broker accepts (AWS_ENDPOINT_URL_STS)', async () => {
    const local: ProofPolicy = { audience: AWS.audience, stsOrigin: 'http://127.0.0.1:5000', partition: 'aws' };
    const raw = await proof('https://sts.eu-central-1.amazonaws.com/');
    expect(refusal(raw, local)).toContain('only http://127.0.0.1:5000/ (its AWS_ENDPOINT_URL_STS)');
  });
});

describe('what is sent to STS, and what the verified-identity cache keys on', () => {
  const padded = (raw: Proof, name: string, value: string): Proof => ({
    ...raw,
    headers: { ...raw.headers, [name]: value },
  });

  it('sends the signed headers, the Authorization and the session token, and nothing the signature does not cover', async () => {
    const raw = await proof('https://sts.eu-central-1.amazonaws.com/');
    const extra = {
      ...raw,
      headers: { ...raw.headers, accept: 'application/json', 'x-amz-target': 'X.Y', 'x-pad': '1' },
    };
    const checked = checkIdentityProof(extra, AWS, NOW);
    expect(Object.keys(checked.headers).sort()).toEqual([
      'authorization',
      'content-type',
      'x-amz-content-sha256',
      'x-amz-date',
      'x-amz-security-token',
      'x-limitrail-broker-audience',
    ]);
    // The host goes as the URL says (the transport sets it), and an unsigned session token still goes along.
    const unsignedToken = {
      ...raw,
      headers: {
        ...raw.headers,
        authorization: raw.headers.authorization!.replace(';x-amz-security-token', ''),
      },
    };
    expect(checkIdentityProof(unsignedToken, AWS, NOW).headers['x-amz-security-token']).toBe('session');
  });

  it('keys a proof on what its signature covers: unsigned headers change nothing, a signed value or the session token does', async () => {
    const raw = await proof('https://sts.eu-central-1.amazonaws.com/');
    const { key } = checkIdentityProof(raw, AWS, NOW);
    for (let i = 0; i < 40; i++) {
      expect(checkIdentityProof(padded(raw, 'x-padding', 'p'.repeat(i)), AWS, NOW).key).toBe(key);
      expect(checkIdentityProof(padded(raw, 'accept', `text/${i}`), AWS, NOW).key).toBe(key);
    }
    expect(checkIdentityProof(padded(raw, 'x-amz-security-token', 'another'), AWS, NOW).key).not.toBe(key);
    expect(checkIdentityProof(padded(raw, 'content-type', 'text/plain'), AWS, NOW).key).not.toBe(key);
    const unsignedToken = { ...raw, headers: { ...raw.headers } };
    unsignedToken.headers.authorization = raw.headers.authorization!.replace(';x-amz-security-token', '');
    const tokenKey = checkIdentityProof(unsignedToken, AWS, NOW).key;
    expect(checkIdentityProof(padded(unsignedToken, 'x-amz-security-token', 'another'), AWS, NOW).key).not.toBe(
      tokenKey,
    );
  });

  it('refuses a proof whose signature covers a header it does not carry', async () => {
    const raw = await proof('https://sts.eu-central-1.amazonaws.com/');
    delete raw.headers['x-amz-content-sha256'];
    expect(outcome(() => checkIdentityProof(raw, AWS, NOW))).toBe('403 proof_unsigned');
    expect(() => checkIdentityProof(raw, AWS, NOW)).toThrow(
      'its signature covers a "x-amz-content-sha256" header it does not carry',
    );
    // The host and the length are the broker's to set: signed, they need not be sent.
    const noHost = await proof('https://sts.eu-central-1.amazonaws.com/');
    delete noHost.headers.host;
    expect(outcome(() => checkIdentityProof(noHost, AWS, NOW))).toBe('accepted');
  });
});

describe("reading STS's answer", () => {
  const ok =
    '<GetCallerIdentityResponse><GetCallerIdentityResult><UserId>AROA:s</UserId><Account>111111111111</Account><Arn>arn:aws:sts::111111111111:assumed-role/billing/s</Arn></GetCallerIdentityResult></GetCallerIdentityResponse>';
  it.each([
    [200, ok, 'arn:aws:sts::111111111111:assumed-role/billing/s'],
    [
      200,
      JSON.stringify({
        GetCallerIdentityResponse: {
          GetCallerIdentityResult: { Arn: 'arn:aws:iam::111111111111:user/ci', Account: '111111111111' },
        },
      }),
      'arn:aws:iam::111111111111:user/ci',
    ],
    [200, ok.replace('<Account>111111111111', '<Account>222222222222'), '503 sts_malformed_answer'],
    // An Arn anywhere but inside GetCallerIdentityResult names nobody, and one result holds exactly one of each.
    [
      200,
      '<GetCallerIdentityResponse><ResponseMetadata><Arn>arn:aws:iam::222222222222:user/other</Arn></ResponseMetadata>' +
        ok.replace('<GetCallerIdentityResponse>', ''),
      'arn:aws:sts::111111111111:assumed-role/billing/s',
    ],
    [
      200,
      '<Note><Arn>arn:aws:iam::111111111111:user/ci</Arn><Account>111111111111</Account></Note>',
      '503 sts_malformed_answer',
    ],
    [200, ok.replace('<UserId>', '<Arn>arn:aws:iam::111111111111:user/ci</Arn><UserId>'), '503 sts_malformed_answer'],
    [200, ok + ok, '503 sts_malformed_answer'],
    [
      200,
      JSON.stringify({ Arn: 'arn:aws:iam::111111111111:user/ci', Account: '111111111111' }),
      '503 sts_malformed_answer',
    ],
    [
      200,
      JSON.stringify({
        GetCallerIdentityResponse: { GetCallerIdentityResult: {} },
        x: '<Arn>arn:aws:iam::111111111111:user/ci</Arn><Account>111111111111</Account>',
      }),
      '503 sts_malformed_answer',
    ],
    [200, '<html>hello</html>', '503 sts_malformed_answer'],
    [
      403,
      '<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>canonical request ...</Message></Error></ErrorResponse>',
      '403 proof_refused_by_sts',
    ],
    [403, '<ErrorResponse><Error><Code>ExpiredToken</Code></Error></ErrorResponse>', '403 proof_refused_by_sts'],
    [400, '<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>', '503 sts_unavailable'],
    [429, '', '503 sts_unavailable'],
    [500, '', '503 sts_unavailable'],
    [302, '', '503 sts_unavailable'],
  ])('HTTP %i %s -> %s', (status, bodyText, expected) => {
    let got: string;
    try {
      got = interpretStsAnswer({ status, bodyText }).arn;
    } catch (err) {
      got = `${(err as BrokerError).status} ${(err as BrokerError).reason}`;
    }
    expect(got).toBe(expected);
  });

  it("keeps only the error code of a refusal, never STS's message", () => {
    try {
      interpretStsAnswer({
        status: 403,
        bodyText: '<Error><Code>SignatureDoesNotMatch</Code><Message>Signature=abc secret</Message></Error>',
      });
    } catch (err) {
      expect((err as Error).message).toBe('identity proof refused by STS (HTTP 403, SignatureDoesNotMatch)');
    }
  });
});
