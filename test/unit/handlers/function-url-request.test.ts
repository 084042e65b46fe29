import { describe, expect, it } from 'vitest';
import { isFunctionUrlEvent, MAX_URL_BODY_BYTES, readUrlEvent } from '../../../functions/lib/handlers/function-url';
import { InvalidRequestError } from '../../../functions/lib/shared/errors';
import { roleSession, urlEvent } from '../../support/fakes/url-event';

const iam = roleSession('billing', '111111111111');
const request = { scopes: ['limitrail.usage.read'] };

/** A valid token request, padded with JSON whitespace to exactly `bytes` bytes of UTF-8. */
const paddedTo = (bytes: number): string => {
  const text = JSON.stringify(request);
  return `${text.slice(0, -1)}${' '.repeat(bytes - Buffer.byteLength(text))}}`;
};

const read = (body: string, base64 = false) => {
  const event = urlEvent(body, { iam, base64 });
  if (!isFunctionUrlEvent(event)) throw new Error('urlEvent should make a Function URL event');
  return readUrlEvent(event);
};

describe('the Function URL body cap (16 KiB of decoded body)', () => {
  it.each([
    ['plain', false],
    ['base64-encoded', true],
  ])('reads a %s body of exactly 16 KiB', (_name, base64) => {
    const body = paddedTo(MAX_URL_BODY_BYTES);
    expect(Buffer.byteLength(body)).toBe(16 * 1024);
    // Measured decoded: the base64 text itself is a third larger than the cap.
    if (base64) expect(urlEvent(body, { iam, base64 }).body.length).toBeGreaterThan(MAX_URL_BODY_BYTES);
    expect(read(body, base64)).toMatchObject({ caller: expect.any(Object), payload: request });
  });

  it.each([
    ['plain', false],
    ['base64-encoded', true],
  ])('refuses a %s body one byte over, before reading it as JSON', (_name, base64) => {
    const input = read(paddedTo(MAX_URL_BODY_BYTES + 1), base64);
    expect(input.payload).toBeUndefined();
    expect(input.caller).toMatchObject({ arn: iam.userArn });
    expect(input.refusal).toBeInstanceOf(InvalidRequestError);
    expect(input.refusal?.toOAuth()).toEqual({
      error: 'invalid_request',
      error_description: 'the body is larger than 16384 bytes',
      status: 400,
    });
  });

  it('counts bytes, not characters: 16 Ki characters of which one takes two bytes are over the cap', () => {
    const text = JSON.stringify({ scopes: ['limitrail.usage.read'], note: 'é' });
    const body = `${text.slice(0, -1)}${' '.repeat(MAX_URL_BODY_BYTES - text.length)}}`;
    expect(body.length).toBe(MAX_URL_BODY_BYTES);
    expect(read(body).refusal?.message).toBe('the body is larger than 16384 bytes');
  });
});

describe('the Function URL body as Lambda sends it', () => {
  /** A POST event as `urlEvent` makes it, with `body` / `isBase64Encoded` replaced (undefined: absent). */
  const readWith = (fields: { body?: unknown; isBase64Encoded?: unknown }) => {
    const { body: _body, isBase64Encoded: _isBase64Encoded, ...rest } = urlEvent(request, { iam });
    const event: Record<string, unknown> = { ...rest };
    if (fields.body !== undefined) event.body = fields.body;
    if (fields.isBase64Encoded !== undefined) event.isBase64Encoded = fields.isBase64Encoded;
    if (!isFunctionUrlEvent(event)) throw new Error('should be a Function URL event');
    return readUrlEvent(event);
  };
  const notJson = { error: 'invalid_request', error_description: 'the body must be a JSON token request', status: 400 };

  it('reads a body sent without isBase64Encoded as plain text', () => {
    expect(readWith({ body: JSON.stringify(request) })).toMatchObject({
      caller: { arn: iam.userArn },
      payload: request,
    });
  });

  it.each([
    ['no body', undefined],
    ['a null body', null],
    ['a body that is not JSON', 'scopes=limitrail.usage.read'],
  ])('refuses %s as not a JSON token request (not as a malformed event), keeping the caller', (_name, body) => {
    const input = readWith({ body, isBase64Encoded: false });
    expect(input.payload).toBeUndefined();
    expect(input.caller).toMatchObject({ arn: iam.userArn });
    expect(input.refusal).toMatchObject({ reason: 'invalid_request' });
    expect(input.refusal?.toOAuth()).toEqual(notJson);
  });

  it('refuses a hand-made body or isBase64Encoded of another type as a malformed event', () => {
    expect(readWith({ body: { scopes: ['a'] } }).refusal).toMatchObject({
      reason: 'url_event_malformed',
      status: 400,
      message: 'malformed Function URL event: "body" must be a string',
    });
    expect(readWith({ body: JSON.stringify(request), isBase64Encoded: 'true' }).refusal).toMatchObject({
      reason: 'url_event_malformed',
      status: 400,
      message: 'malformed Function URL event: "isBase64Encoded" must be a boolean',
    });
  });
});
