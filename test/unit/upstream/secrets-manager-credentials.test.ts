import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { describe, expect, it } from 'vitest';
import { ClientCredentials } from '../../../functions/lib/domain/client-credentials';
import { ConfigurationError, UnavailableError } from '../../../functions/lib/shared/errors';
import { SecretsManagerCredentials } from '../../../functions/lib/upstream/secrets-manager-credentials';

/**
 * The client credentials from Secrets Manager (secret-source.ts), with a fake Secrets Manager at the I/O edge that
 * counts its reads and can fail like the SDK does, and a fake clock: how long credentials are kept, and what a
 * failing read means.
 */
const MAX_AGE_SEC = 300;
const START_MS = Date.parse('2026-11-29T06:00:00Z');
const awsError = (name: string, httpStatusCode?: number) =>
  Object.assign(new Error(`${name}: a message that may quote the request`), {
    name,
    $metadata: httpStatusCode === undefined ? {} : { httpStatusCode },
  });

const setup = () => {
  let nowMs = START_MS;
  const versions: Record<string, { id: string; secret: string } | undefined> = {
    AWSCURRENT: { id: 'v2', secret: 'secret-v2' },
    AWSPREVIOUS: { id: 'v1', secret: 'secret-v1' },
  };
  const reads: string[] = [];
  let failure: Error | undefined;
  const client = {
    send: async (command: unknown) => {
      if (!(command instanceof GetSecretValueCommand)) throw new Error('the fake Secrets Manager only reads');
      const stage = command.input.VersionStage!;
      reads.push(stage);
      if (failure) throw failure;
      const version = versions[stage];
      if (!version) throw awsError('ResourceNotFoundException', 400);
      return {
        VersionId: version.id,
        SecretString: JSON.stringify({ client_id: 'lr_1', client_secret: version.secret }),
      };
    },
  } as unknown as SecretsManagerClient;
  return {
    source: new SecretsManagerCredentials(client, { nowMs: () => nowMs }, MAX_AGE_SEC),
    reads,
    versions,
    advance: (ms: number) => (nowMs += ms),
    fail: (err: Error | undefined) => (failure = err),
  };
};

describe('the credentials kept in memory', () => {
  it('are read once per SECRET_MAX_AGE_SEC, then read again', async () => {
    const t = setup();
    expect((await t.source.get('s')).clientSecret()).toBe('secret-v2');
    t.advance(MAX_AGE_SEC * 1000 - 1);
    await t.source.get('s');
    expect(t.reads).toEqual(['AWSCURRENT']);
    t.versions.AWSCURRENT = { id: 'v3', secret: 'secret-v3' };
    t.advance(1);
    expect((await t.source.get('s')).versionId).toBe('v3');
    expect(t.reads).toEqual(['AWSCURRENT', 'AWSCURRENT']);
  });

  it('are read again at once when asked fresh (the endpoint rejected them)', async () => {
    const t = setup();
    await t.source.get('s');
    t.versions.AWSCURRENT = { id: 'v3', secret: 'secret-v3' };
    expect((await t.source.get('s', { fresh: true })).versionId).toBe('v3');
    expect((await t.source.get('s')).versionId).toBe('v3'); // and kept
    expect(t.reads).toEqual(['AWSCURRENT', 'AWSCURRENT']);
  });

  it('can be replaced by a version the endpoint still accepts (AWSPREVIOUS), kept like a read', async () => {
    const t = setup();
    await t.source.get('s');
    t.source.remember(new ClientCredentials('s', 'lr_1', 'secret-v1', 'v1'));
    expect((await t.source.get('s')).versionId).toBe('v1');
    expect(t.reads).toEqual(['AWSCURRENT']);
  });

  it('are used whatever their age while Secrets Manager is unavailable, saying so', async () => {
    const t = setup();
    await t.source.get('s');
    t.advance(MAX_AGE_SEC * 1000);
    t.fail(awsError('ThrottlingException', 400));
    const fallbacks: UnavailableError[] = [];
    expect((await t.source.get('s', { onFallback: (err) => fallbacks.push(err) })).versionId).toBe('v2');
    expect(fallbacks).toHaveLength(1);
    expect(fallbacks[0]).toMatchObject({
      reason: 'secrets_unavailable',
      message: 'Secrets Manager is unavailable reading secret "s": ThrottlingException (HTTP 400)',
    });
  });
});

describe('a failing read', () => {
  it('does not fall back on credentials read before when the secret is refused or gone (not an outage)', async () => {
    const t = setup();
    await t.source.get('s');
    t.advance(MAX_AGE_SEC * 1000);
    t.fail(awsError('AccessDeniedException', 400));
    await expect(t.source.get('s', { onFallback: () => undefined })).rejects.toMatchObject({
      reason: 'secret_unreadable',
    });
  });

  it.each([
    [
      'unavailable (5xx)',
      awsError('InternalServiceError', 500),
      UnavailableError,
      'secrets_unavailable',
      'is unavailable reading secret "s": InternalServiceError (HTTP 500)',
    ],
    [
      'unavailable (no answer)',
      awsError('TimeoutError'),
      UnavailableError,
      'secrets_unavailable',
      'is unavailable reading secret "s": TimeoutError',
    ],
    [
      'a missing secret',
      awsError('ResourceNotFoundException', 400),
      ConfigurationError,
      'secret_not_found',
      'secret "s" was not found',
    ],
    [
      'access denied',
      awsError('AccessDeniedException', 400),
      ConfigurationError,
      'secret_unreadable',
      'secret "s" could not be read: AccessDeniedException (HTTP 400)',
    ],
  ])(
    'with nothing read before: %s is its error, without the SDK message',
    async (_name, err, type, reason, fragment) => {
      const t = setup();
      t.fail(err);
      const thrown = await t.source.get('s').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(thrown).toBeInstanceOf(type);
      expect(thrown).toMatchObject({ reason, cause: err });
      expect((thrown as Error).message).toContain(fragment);
      expect((thrown as Error).message).not.toContain('may quote');
    },
  );

  it('is not kept: the next read asks again', async () => {
    const t = setup();
    t.fail(awsError('InternalServiceError', 500));
    await expect(t.source.get('s')).rejects.toBeInstanceOf(UnavailableError);
    t.fail(undefined);
    expect((await t.source.get('s')).versionId).toBe('v2');
    expect(t.reads).toEqual(['AWSCURRENT', 'AWSCURRENT']);
  });
});

describe('the previous version', () => {
  it('is read each time asked, and is none when the secret has no AWSPREVIOUS', async () => {
    const t = setup();
    expect((await t.source.previous('s'))?.versionId).toBe('v1');
    t.versions.AWSPREVIOUS = undefined;
    expect(await t.source.previous('s')).toBeUndefined();
    expect(t.reads).toEqual(['AWSPREVIOUS', 'AWSPREVIOUS']);
  });

  it('is an error when Secrets Manager fails otherwise', async () => {
    const t = setup();
    t.fail(awsError('InternalServiceError', 500));
    await expect(t.source.previous('s')).rejects.toMatchObject({ reason: 'secrets_unavailable' });
  });
});
