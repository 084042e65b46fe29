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
    ['https://user@sts.amazonaws.com/', '403 proof_not_sts'],
    ['https://:pw@sts.amazonaws.com/', '403 proof_not_sts'],
    ['https://sts.amazonaws.com/#fragment', '403 proof_not_sts'],
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

  it('reads a URL of at most 512 characters, and refuses a longer one as malformed before parsing it', async () => {
    const raw = await proof('https://sts.eu-central-1.amazonaws.com/');
    const base = 'https://sts.eu-central-1.amazonaws.com/?';
    raw.url = base + 'a'.repeat(512 - base.length);
    expect(outcome(() => checkIdentityProof(raw, AWS, NOW))).toBe('403 proof_not_sts');
    raw.url = base + 'a'.repeat(513 - base.length);
    expect(outcome(() => checkIdentityProof(raw, AWS, NOW))).toBe('400 proof_malformed');
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
    ['exactly 5:00 old', NOW + 300_000, 'accepted'],
    ['5:01 old', NOW + 301_000, '403 proof_expired'],
    ['59 s ahead', NOW - 59_000, 'accepted'],
    ['exactly 60 s ahead', NOW - 60_000, 'accepted'],
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
    ['a header name with an underscore', (p: Proof) => (p.headers.x_pad = 'v'), '400 proof_malformed'],
    ['a header name of 65 characters', (p: Proof) => (p.headers[`x-${'a'.repeat(63)}`] = 'v'), '400 proof_malformed'],
    [
      'one header twice, in two cases',
      (p: Proof) => (p.headers['X-Limitrail-Broker-Audience'] = 'broker-dev-token'),
      '400 proof_malformed',
    ],
    [
      'x-amz-date signed but not host',
      (p: Proof) => (p.headers.authorization = p.headers.authorization!.replace(';host;', ';')),
      '403 proof_unsigned',
    ],
    [
      'host signed but not x-amz-date',
      (p: Proof) => (p.headers.authorization = p.headers.authorization!.replace(';x-amz-date;', ';')),
      '403 proof_unsigned',
    ],
    [
      // Never forwarded from a caller: a signature over it cannot be replayed as signed.
      'a signed transfer-encoding header',
      (p: Proof) => {
        p.headers['transfer-encoding'] = 'chunked';
        p.headers.authorization = p.headers.authorization!.replace(
          ';x-amz-content-sha256;',
          ';transfer-encoding;x-amz-content-sha256;',
        );
      },
      '403 proof_unsigned',
    ],
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

describe('how many headers a proof may carry', () => {
  const headerBytes = (p: Proof) =>
    Object.entries(p.headers).reduce((n, [name, value]) => n + name.length + (value as string).length, 0);

  it('accepts 24 headers and refuses 25', async () => {
    const raw = await proof('https://sts.eu-central-1.amazonaws.com/');
    for (let i = Object.keys(raw.headers).length; i < 24; i++) raw.headers[`x-h${i}`] = 'v';
    expect(outcome(() => checkIdentityProof(raw, AWS, NOW))).toBe('accepted');
    raw.headers['x-h-last'] = 'v';
    expect(outcome(() => checkIdentityProof(raw, AWS, NOW))).toBe('400 proof_malformed');
  });

  it('accepts 16 KiB of header names and values, and refuses one byte more, even in an unsigned header', async () => {
    const raw = await proof('https://sts.eu-central-1.amazonaws.com/');
    raw.headers['x-pad'] = 'p'.repeat(16 * 1024 - headerBytes(raw) - 'x-pad'.length);
    expect(headerBytes(raw)).toBe(16 * 1024);
    expect(outcome(() => checkIdentityProof(raw, AWS, NOW))).toBe('accepted');
    raw.headers['x-pad'] += 'p';
    expect(outcome(() => checkIdentityProof(raw, AWS, NOW))).toBe('400 proof_malformed');
  });

  it('counts the headers the broker drops (content-length, connection, ...) too', async () => {
    const raw = await proof('https://sts.eu-central-1.amazonaws.com/');
    raw.headers.connection = 'k'.repeat(16 * 1024);
    expect(outcome(() => checkIdentityProof(raw, AWS, NOW))).toBe('400 proof_malformed');
  });
});

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

  // The messages docs/troubleshooting.md lists per reason: each names the check that failed.
  it.each([
    [
      'not an object',
      () => 'text',
      'proof_malformed: "identityProof" must be an object with "url", "headers" and "body"',
    ],
    [
      'an extra field',
      (p: Proof) => ({ ...p, extra: 1 }),
      'proof_malformed: "identityProof" may only have "url", "headers" and "body"',
    ],
    [
      'a URL of 513 characters',
      (p: Proof) => ({ ...p, url: `https://sts.amazonaws.com/?${'a'.repeat(513 - 27)}` }),
      'proof_malformed: "identityProof" "url" must be a string of at most 512 characters',
    ],
    [
      'a URL without a scheme',
      (p: Proof) => ({ ...p, url: 'sts.amazonaws.com/' }),
      'proof_malformed: "identityProof" "url" is not an absolute URL',
    ],
    [
      'headers that are a list',
      (p: Proof) => ({ ...p, headers: [] }),
      'proof_malformed: "identityProof" "headers" must be an object of header name -> string',
    ],
    [
      '25 headers',
      (p: Proof) => ({
        ...p,
        headers: { ...p.headers, ...Object.fromEntries(Array.from({ length: 18 }, (_, i) => [`x-h${i}`, 'v'])) },
      }),
      'proof_malformed: "identityProof" "headers" has more than 24 entries',
    ],
    [
      'one header twice',
      (p: Proof) => ({ ...p, headers: { ...p.headers, 'X-Amz-Date': p.headers['x-amz-date'] } }),
      'proof_malformed: "identityProof" "headers" has an invalid or repeated header name',
    ],
    [
      'a header value with a line break',
      (p: Proof) => ({ ...p, headers: { ...p.headers, 'x-amz-date': `${p.headers['x-amz-date']}\r\nx: y` } }),
      'proof_malformed: "identityProof" "headers" value of "x-amz-date" must be printable ASCII',
    ],
    [
      'headers over 16 KiB',
      (p: Proof) => ({ ...p, headers: { ...p.headers, 'x-pad': 'p'.repeat(16 * 1024) } }),
      'proof_malformed: "identityProof" "headers" are larger than 16384 bytes',
    ],
    [
      'another action',
      (p: Proof) => ({ ...p, body: 'Action=AssumeRole&Version=2011-06-15' }),
      'proof_not_get_caller_identity: identity proof refused: its body must be exactly ' +
        'Action=GetCallerIdentity&Version=2011-06-15',
    ],
    [
      'a signature for another service',
      (p: Proof) => ({
        ...p,
        headers: { ...p.headers, authorization: p.headers.authorization!.replace('/sts/', '/iam/') },
      }),
      'proof_not_sts: identity proof refused: it is not signed for the sts service',
    ],
    [
      'an unsigned audience header',
      (p: Proof) => ({
        ...p,
        headers: { ...p.headers, authorization: p.headers.authorization!.replace(';x-limitrail-broker-audience', '') },
      }),
      'proof_audience_unsigned: identity proof refused: its x-limitrail-broker-audience header is not signed',
    ],
    [
      'a host header for another host',
      (p: Proof) => ({ ...p, headers: { ...p.headers, host: 'sts.us-east-1.amazonaws.com' } }),
      'proof_not_sts: identity proof refused: its host header does not match its URL',
    ],
    [
      'a proof signed 5:01 ago',
      (p: Proof) => ({ ...p, headers: { ...p.headers, 'x-amz-date': '20261129T075459Z' } }),
      'proof_expired: identity proof refused: it was signed more than 5 minutes ago; sign a new one',
    ],
    [
      'a proof dated 61 s ahead',
      (p: Proof) => ({ ...p, headers: { ...p.headers, 'x-amz-date': '20261129T080101Z' } }),
      'proof_from_future: identity proof refused: it is dated more than 1 minute in the future',
    ],
  ])('%s: says exactly which check failed', async (_name, change, said) => {
    const raw = await proof('https://sts.eu-central-1.amazonaws.com/');
    expect(refusal(change(raw))).toBe(said);
  });

  it('tells a caller signing with a placeholder key what an access key id is and what to sign with', async () => {
    const raw = await proof('https://sts.eu-central-1.amazonaws.com/');
    raw.headers.authorization = raw.headers.authorization!.replace('ASIAEXAMPLEEXAMPLE01', 'test');
    expect(refusal(raw)).toBe(
      'proof_unsigned: identity proof refused: its access key id has an unsupported format (4 characters): AWS ' +
        'access key ids are 16 to 128 letters and digits (AKIA…, ASIA…), which a placeholder such as "test" is not; ' +
        'sign it with the credentials of an AWS (or, locally, moto) session',
    );
  });

  it("names the China partition's STS endpoints to a broker in China", async () => {
    const raw = await proof('https://sts.eu-central-1.amazonaws.com/');
    expect(refusal(raw, { ...AWS, partition: 'aws-cn' })).toBe(
      "proof_not_sts: identity proof refused: its URL is not an AWS STS endpoint of this broker's partition " +
        '(https://sts.<region>.amazonaws.com.cn/)',
    );
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

  it('sets a signed content-length from the body itself: the caller need not carry it, and it is not sent', async () => {
    const raw = await proof('https://sts.eu-central-1.amazonaws.com/');
    raw.headers.authorization = raw.headers.authorization!.replace('SignedHeaders=', 'SignedHeaders=content-length;');
    const checked = checkIdentityProof(raw, AWS, NOW);
    expect(Object.keys(checked.headers)).not.toContain('content-length');
    // What the caller says the length is changes neither what is sent nor the key: the body's length is what is signed.
    const claimed = checkIdentityProof({ ...raw, headers: { ...raw.headers, 'content-length': '999' } }, AWS, NOW);
    expect(claimed).toEqual(checked);
  });

  it('keys a proof on its signed headers, not on the order its SignedHeaders lists them in', async () => {
    const raw = await proof('https://sts.eu-central-1.amazonaws.com/');
    const { key } = checkIdentityProof(raw, AWS, NOW);
    const reordered = raw.headers.authorization!.replace(
      /SignedHeaders=([^,]+)/,
      (_all, list: string) => `SignedHeaders=${list.split(';').reverse().join(';')}`,
    );
    expect(reordered).not.toBe(raw.headers.authorization);
    expect(checkIdentityProof({ ...raw, headers: { ...raw.headers, authorization: reordered } }, AWS, NOW).key).toBe(
      key,
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
