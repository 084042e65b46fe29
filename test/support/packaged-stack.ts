/**
 * `osls package` of a sample stage, fully offline: dummy credentials, and every AWS endpoint pointed at a closed
 * loopback port, so any call to AWS fails the packaging instead of leaving the machine. The test files that check
 * what a deploy would create (package.test.ts, iam-evaluation.test.ts, template-spec.test.ts) each package once.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

export const ROOT = join(import.meta.dirname, '..', '..');
const OSLS = join(ROOT, 'node_modules', 'osls', 'bin', 'serverless.js');
const run = promisify(execFile);

export type Json = Record<string, unknown>;
export interface CfnResource {
  Type: string;
  Properties: Json;
  DeletionPolicy?: string;
  UpdateReplacePolicy?: string;
  Condition?: string;
  DependsOn?: string | string[];
}
export interface CfnTemplate {
  Resources: Record<string, CfnResource>;
  Conditions?: Json;
  Outputs?: Json;
}

export interface PackagedStage {
  /** Where osls wrote the zips, the templates and serverless-state.json; removed by `remove()`. */
  dir: string;
  /** cloudformation-template-update-stack.json: what `osls deploy` would deploy. */
  template: CfnTemplate;
  /** serverless-state.json. */
  state: { service: { functions: Record<string, { package: { artifact: string } }> } };
  remove(): Promise<void>;
}

/** Offline-only environment for osls: no credentials of the developer, no reachable AWS endpoint. */
const offlineEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('AWS_') && !key.startsWith('SLS_') && !key.startsWith('SERVERLESS_')) env[key] = value;
  }
  return {
    ...env,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_REGION: 'eu-west-1',
    AWS_ENDPOINT_URL: 'http://127.0.0.1:9',
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_MAX_ATTEMPTS: '1',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    SLS_TELEMETRY_DISABLED: '1',
    SLS_NOTIFICATIONS_MODE: 'off',
  };
};

/**
 * Packages `stage` into a private temporary directory (parallel runs never clash; nothing is written into the repo).
 * `params`: `--param name=value` overrides of the stage's parameters.
 */
export const packageStage = async (stage = 'ci', params: Record<string, string> = {}): Promise<PackagedStage> => {
  if (!['token', 'prewarm'].every((fn) => existsSync(join(ROOT, 'dist', fn, 'handler.js')))) {
    await run(process.execPath, [join(ROOT, 'scripts', 'build.mjs')], { cwd: ROOT });
  }
  const dir = await mkdtemp(join(tmpdir(), 'token-broker-package-'));
  const remove = () => rm(dir, { recursive: true, force: true });
  try {
    const overrides = Object.entries(params).flatMap(([name, value]) => ['--param', `${name}=${value}`]);
    await run(process.execPath, [OSLS, 'package', '--stage', stage, '--package', dir, ...overrides], {
      cwd: ROOT,
      env: offlineEnv(),
      timeout: 110_000,
    });
  } catch (err) {
    await remove();
    const { stdout = '', stderr = '' } = err as { stdout?: string; stderr?: string };
    throw new Error(`osls package failed:\n${stdout}\n${stderr}`);
  }
  const template = JSON.parse(
    await readFile(join(dir, 'cloudformation-template-update-stack.json'), 'utf8'),
  ) as CfnTemplate;
  const state = JSON.parse(await readFile(join(dir, 'serverless-state.json'), 'utf8')) as PackagedStage['state'];
  return { dir, template, state, remove };
};
