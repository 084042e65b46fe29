/**
 * What `npm start` writes so that your own code can call the local broker the way it calls a deployed one (with the
 * client packages and the default AWS credential chain), configured only by the environment:
 *
 *   .local/caller.env        the region, AWS_ENDPOINT_URL_LAMBDA (serverless-offline's Invoke API),
 *                            AWS_ENDPOINT_URL_STS (moto: where identity proofs are signed for and replayed to),
 *                            the token function's name and the proofs' audience, and the two AWS files below
 *   .local/aws/config        one profile per demo caller role: `granted` and `nogrant` (test/support/stacks/demo-callers.ts)
 *   .local/aws/credentials   their session credentials, from AssumeRole in moto (0600)
 *
 *   set -a; . .local/caller.env; set +a
 *   export AWS_PROFILE=granted        # or nogrant: refused with access_denied
 *
 * The credentials are moto's: good for this run of `npm start` only, and for nothing else. The endpoints stay the
 * same across restarts with fixed ports (`npm start -- --port N`).
 */
import { chmod, mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

import type { DemoCaller, DemoSession } from '../test/support/stacks/demo-callers';

/** The AWS profile of each demo caller role in .local/aws/config. */
export const DEMO_PROFILES: Record<DemoCaller, string> = { granted: 'granted', nogrant: 'nogrant', jwt: 'jwt' };

export interface CallerSettings {
  region: string;
  lambdaEndpoint: string;
  stsEndpoint: string;
  functionName: string;
  audience: string;
}

export interface CallerFiles {
  envFile: string;
  configFile: string;
  credentialsFile: string;
}

/** The files' paths: beside the stack file (`.local/`, or the tests' own directory). */
export const callerFilesIn = (directory: string): CallerFiles => ({
  envFile: resolve(directory, 'caller.env'),
  configFile: resolve(directory, 'aws', 'config'),
  credentialsFile: resolve(directory, 'aws', 'credentials'),
});

/** `KEY=value`, the value single-quoted when it has anything a shell or an env-file reader could split or expand. */
const assignment = (key: string, value: string): string =>
  /^[\w@%+=:,./-]+$/.test(value) ? `${key}=${value}` : `${key}='${value.replaceAll("'", `'\\''`)}'`;

/** caller.env: for `set -a; . caller.env`, `node --env-file`, python-dotenv, an IDE's env file. */
export const callerEnv = (settings: CallerSettings, files: CallerFiles): string =>
  [
    '# Written by `npm start` for your own code calling the local broker (docs/callers.md, "Call the local broker',
    '# from your own code"). Then choose a demo caller: export AWS_PROFILE=granted (or nogrant, refused).',
    assignment('AWS_REGION', settings.region),
    assignment('AWS_DEFAULT_REGION', settings.region),
    assignment('AWS_ENDPOINT_URL_LAMBDA', settings.lambdaEndpoint),
    assignment('AWS_ENDPOINT_URL_STS', settings.stsEndpoint),
    assignment('AWS_CONFIG_FILE', files.configFile),
    assignment('AWS_SHARED_CREDENTIALS_FILE', files.credentialsFile),
    '# No instance metadata lookups: without a profile, fail at once.',
    'AWS_EC2_METADATA_DISABLED=true',
    "# The AWS SDK for JavaScript's notice about Node 20 (this repository's Node; Lambda runs 22).",
    'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true',
    assignment('LIMITRAIL_BROKER_FUNCTION', settings.functionName),
    assignment('LIMITRAIL_BROKER_AUDIENCE', settings.audience),
    '',
  ].join('\n');

const awsConfig = (region: string): string =>
  [
    '# Written by `npm start`: the demo caller roles of the local stack (see caller.env).',
    ...Object.values(DEMO_PROFILES).flatMap((profile) => [`[profile ${profile}]`, `region = ${region}`]),
    '',
  ].join('\n');

const awsCredentials = (sessions: Record<DemoCaller, DemoSession>): string =>
  [
    "# Written by `npm start`: sessions of the demo caller roles, assumed in the local stack's moto. They work only",
    '# with that moto (AWS_ENDPOINT_URL_STS of caller.env) while this run of npm start lasts.',
    ...(Object.keys(DEMO_PROFILES) as DemoCaller[]).flatMap((caller) => {
      const { arn, credentials } = sessions[caller];
      return [
        `# ${arn}`,
        `[${DEMO_PROFILES[caller]}]`,
        `aws_access_key_id = ${credentials.accessKeyId}`,
        `aws_secret_access_key = ${credentials.secretAccessKey}`,
        ...(credentials.sessionToken ? [`aws_session_token = ${credentials.sessionToken}`] : []),
      ];
    }),
    '',
  ].join('\n');

/** Replaces a file whole (a reader never sees half of it), readable by its owner only when `secret`. */
const replaceFile = async (path: string, content: string, secret = false): Promise<void> => {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const partial = `${path}.${process.pid}.tmp`;
  await writeFile(partial, content, { mode: secret ? 0o600 : 0o644 });
  if (secret) await chmod(partial, 0o600);
  await rename(partial, path);
};

/** Writes caller.env and the AWS config and credentials files into `directory`; returns their paths. */
export const writeCallerFiles = async (
  directory: string,
  settings: CallerSettings,
  sessions: Record<DemoCaller, DemoSession>,
): Promise<CallerFiles> => {
  const files = callerFilesIn(directory);
  await replaceFile(files.credentialsFile, awsCredentials(sessions), true);
  await replaceFile(files.configFile, awsConfig(settings.region));
  await replaceFile(files.envFile, callerEnv(settings, files));
  return files;
};
