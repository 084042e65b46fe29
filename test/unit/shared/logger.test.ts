import type { Context } from 'aws-lambda';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  createPowertoolsLogger,
  DEFAULT_SERVICE_NAME,
  Logger,
  lambdaContextFields,
  logLevelFromEnv,
  REDACTED,
} from '../../../functions/lib/shared/logger';
import { captureLogLines, stopCapturing } from '../../support/log-capture';

/** Powertools reads the trace id (and, for addContext, the cold start) from the process environment, as in Lambda. */
const LAMBDA_ENV = {
  AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
  _X_AMZN_TRACE_ID: 'Root=1-67a1b2c3-0123456789abcdef01234567;Sampled=1',
};
const context = (awsRequestId: string): Context =>
  ({
    awsRequestId,
    functionName: 'limitrail-token-broker-ci-token',
    functionVersion: '$LATEST',
    memoryLimitInMB: '256',
    invokedFunctionArn: 'arn:aws:lambda:eu-west-1:111111111111:function:limitrail-token-broker-ci-token',
  }) as Context;

const SECRET = 'sk-live-3f9a0c1d';
let lines: string[] = [];
const parsed = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
const logger = (env: NodeJS.ProcessEnv = {}) => new Logger(createPowertoolsLogger(env));

beforeEach(() => {
  for (const [key, value] of Object.entries(LAMBDA_ENV)) vi.stubEnv(key, value);
  lines = captureLogLines([]);
});
afterEach(() => {
  stopCapturing(lines);
  vi.unstubAllEnvs();
  vi.restoreAllMocks();
});

describe('log lines', () => {
  it('carry the Powertools keys, the Lambda context and the fields, on one JSON line each', () => {
    const log = logger();
    const invocation = log.child(lambdaContextFields(context('req-1'), true));
    log.child(lambdaContextFields(context('req-2'), false)).info('second invocation');
    invocation.child({ requestId: 'req-1' }).info('token served', { audit: 'issued', client: 'limitrail' });
    const [second, first] = parsed();
    expect(first).toEqual({
      level: 'INFO',
      message: 'token served',
      timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      service: DEFAULT_SERVICE_NAME,
      cold_start: true,
      function_arn: 'arn:aws:lambda:eu-west-1:111111111111:function:limitrail-token-broker-ci-token',
      function_memory_size: '256',
      function_name: 'limitrail-token-broker-ci-token',
      function_request_id: 'req-1',
      sampling_rate: 0,
      xray_trace_id: '1-67a1b2c3-0123456789abcdef01234567',
      requestId: 'req-1',
      audit: 'issued',
      client: 'limitrail',
    });
    expect(second).toMatchObject({ cold_start: false, function_request_id: 'req-2', message: 'second invocation' });
  });

  it("write an invocation's Lambda context as Powertools' addContext does: the same keys, values and order", () => {
    const reference = createPowertoolsLogger({});
    reference.addContext(context('req-1')); // the first invocation of an on-demand container: cold start
    reference.info('served', { requestId: 'req-1' });
    logger()
      .child(lambdaContextFields(context('req-1'), true))
      .info('served', { requestId: 'req-1' });
    const [theirs, ours] = parsed();
    expect(Object.keys(ours!)).toEqual(Object.keys(theirs!));
    expect({ ...ours, timestamp: theirs!.timestamp }).toEqual(theirs);
    expect(theirs).toMatchObject({ cold_start: true, function_request_id: 'req-1' });
  });

  it('name the service from POWERTOOLS_SERVICE_NAME, trimmed', () => {
    logger({ POWERTOOLS_SERVICE_NAME: 'billing-token-broker' }).info('hello');
    logger({ POWERTOOLS_SERVICE_NAME: ' billing-token-broker\n' }).info('hello');
    expect(parsed().map((l) => l.service)).toEqual(['billing-token-broker', 'billing-token-broker']);
  });

  it('write info and debug to stdout, warnings and errors to stderr', () => {
    const stderr = vi.spyOn(process.stderr, 'write');
    const log = logger({ POWERTOOLS_LOG_LEVEL: 'DEBUG' });
    log.debug('d');
    log.info('i');
    expect(stderr).not.toHaveBeenCalled();
    log.warn('w');
    log.error('e');
    expect(stderr).toHaveBeenCalledTimes(2);
    expect(parsed().map((l) => l.level)).toEqual(['DEBUG', 'INFO', 'WARN', 'ERROR']);
  });
});

describe('log level', () => {
  it('follows AWS_LAMBDA_LOG_LEVEL, then POWERTOOLS_LOG_LEVEL, then LOG_LEVEL, else INFO', () => {
    expect(logLevelFromEnv({})).toBe('INFO');
    expect(logLevelFromEnv({ LOG_LEVEL: 'debug' })).toBe('DEBUG');
    expect(logLevelFromEnv({ LOG_LEVEL: 'debug', POWERTOOLS_LOG_LEVEL: 'warn' })).toBe('WARN');
    expect(logLevelFromEnv({ POWERTOOLS_LOG_LEVEL: 'warn', AWS_LAMBDA_LOG_LEVEL: 'ERROR' })).toBe('ERROR');
    expect(logLevelFromEnv({ AWS_LAMBDA_LOG_LEVEL: 'FATAL' })).toBe('CRITICAL');
    expect(logLevelFromEnv({ POWERTOOLS_LOG_LEVEL: 'loud', LOG_LEVEL: 'warn' })).toBe('WARN');
  });

  it('drops lines below the level', () => {
    const log = logger({ POWERTOOLS_LOG_LEVEL: 'WARN' });
    log.debug('d');
    log.info('i');
    log.warn('w');
    expect(parsed().map((l) => l.message)).toEqual(['w']);
  });
});

describe('redaction', () => {
  it('redacts credential-named fields at any depth, whatever their spelling', () => {
    logger().info('nested', {
      client_secret: SECRET,
      request: {
        headers: { Authorization: `Basic ${SECRET}`, 'X-Amz-Security-Token': SECRET },
        body: [{ accessToken: SECRET }],
      },
      credentials: { secretAccessKey: SECRET, sessionToken: SECRET, accessKeyId: 'AKIAEXAMPLE' },
      identityProof: { headers: { authorization: SECRET } },
    });
    const [line] = parsed();
    expect(lines.join('\n')).not.toContain(SECRET);
    expect(line).toMatchObject({
      client_secret: REDACTED,
      request: {
        headers: { Authorization: REDACTED, 'X-Amz-Security-Token': REDACTED },
        body: [{ accessToken: REDACTED }],
      },
      credentials: { secretAccessKey: REDACTED, sessionToken: REDACTED, accessKeyId: 'AKIAEXAMPLE' },
      identityProof: REDACTED,
    });
  });

  it("redacts names that end like a credential, and keeps the broker's own fingerprints, ids and keys", () => {
    logger().info('suffixes', {
      bearerToken: SECRET,
      apiKey: SECRET,
      x_api_key: SECRET,
      dbPassword: SECRET,
      privateKey: SECRET,
      requestSignature: SECRET,
      tokenFingerprint: 'abc123',
      cacheKey: 'v1:0123',
      kmsKeyId: 'alias/k',
    });
    const [line] = parsed();
    expect(lines.join('\n')).not.toContain(SECRET);
    expect(line).toMatchObject({
      bearerToken: REDACTED,
      apiKey: REDACTED,
      x_api_key: REDACTED,
      dbPassword: REDACTED,
      privateKey: REDACTED,
      requestSignature: REDACTED,
    });
    expect(line).toMatchObject({ tokenFingerprint: 'abc123', cacheKey: 'v1:0123', kmsKeyId: 'alias/k' });
  });

  it('redacts fields set on child loggers, children of children, and Powertools persistent keys and children', () => {
    const log = logger();
    log.powertools.appendPersistentKeys({ upstream: { password: SECRET } });
    const child = log.child({ token: SECRET }).child({ cached: { access_token: SECRET } });
    child.warn('from a child');
    const powertoolsChild = log.powertools.createChild({ persistentKeys: { session: { clientSecret: SECRET } } });
    powertoolsChild.appendKeys({ secret: SECRET });
    powertoolsChild.info('from a Powertools child');
    const [fromChild, fromPowertoolsChild] = parsed();
    expect(lines.join('\n')).not.toContain(SECRET);
    expect(fromChild).toMatchObject({
      upstream: { password: REDACTED },
      token: REDACTED,
      cached: { access_token: REDACTED },
    });
    expect(fromPowertoolsChild).toMatchObject({
      upstream: { password: REDACTED },
      session: { clientSecret: REDACTED },
      secret: REDACTED,
    });
  });

  it('keeps ids, fingerprints and counts whose names only contain a credential word', () => {
    logger().info('kept', {
      secretId: 'limitrail/broker',
      tokenFingerprint: 'ab12cd34ef56',
      secretVersion: 'AWSPREVIOUS',
      tokenUrl: 'https://auth.example/token',
    });
    expect(parsed()[0]).toMatchObject({
      secretId: 'limitrail/broker',
      tokenFingerprint: 'ab12cd34ef56',
      secretVersion: 'AWSPREVIOUS',
      tokenUrl: 'https://auth.example/token',
    });
  });

  it('logs errors by name and code only: no message, stack or cause, at any depth', () => {
    const cause = new Error(`upstream said ${SECRET}`);
    const sdkError = Object.assign(new Error(`AccessDenied for ${SECRET}`, { cause }), {
      name: 'AccessDeniedException',
      code: 'AccessDenied',
    });
    const socketError = Object.assign(new Error(`connect ECONNREFUSED (${SECRET})`), { code: 'ECONNREFUSED' });
    logger().error('failed', { error: sdkError, attempts: [{ failure: socketError }], plain: new TypeError(SECRET) });
    const [line] = parsed();
    expect(lines.join('\n')).not.toContain(SECRET);
    expect(lines[0]).not.toMatch(/stack|cause|location/);
    expect(line).toMatchObject({
      error: { name: 'AccessDeniedException', code: 'AccessDenied' },
      attempts: [{ failure: { name: 'Error', code: 'ECONNREFUSED' } }],
      plain: { name: 'TypeError' },
    });
  });

  it('keeps a numeric error code, and leaves out a credential field that has no value rather than marking it', () => {
    const errno = Object.assign(new Error(SECRET), { code: -111 });
    logger().warn('failed', { error: errno, clientSecret: undefined, accessToken: SECRET });
    const [line] = parsed();
    expect(line).toMatchObject({ error: { name: 'Error', code: -111 }, accessToken: REDACTED });
    expect(line).not.toHaveProperty('clientSecret');
    expect(lines.join('\n')).not.toContain(SECRET);
  });
});
