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

export const ROOT = join(import.meta.dirname, '..', '..', '..');
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
  /** What osls printed (its warnings among it). */
  output: string;
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

/** Stage parameters given on the command line (`--param name=value`), which win over serverless.yml's. */
export type StageParams = Record<string, string>;

export interface OslsRun {
  /** osls's exit code (0: it did what it was asked). */
  code: number;
  /** What it printed, stdout then stderr. */
  output: string;
}

/** Runs osls offline (`args` after `osls`, plus `--param` for each of `params`); resolves whatever osls exits with. */
export const runOsls = async (args: string[], params: StageParams = {}): Promise<OslsRun> => {
  const paramArgs = Object.entries(params).flatMap(([name, value]) => ['--param', `${name}=${value}`]);
  try {
    const { stdout, stderr } = await run(process.execPath, [OSLS, ...args, ...paramArgs], {
      cwd: ROOT,
      env: offlineEnv(),
      timeout: 110_000,
    });
    return { code: 0, output: `${stdout}\n${stderr}` };
  } catch (err) {
    const { code, stdout = '', stderr = '' } = err as { code?: number | string; stdout?: string; stderr?: string };
    return { code: typeof code === 'number' ? code : -1, output: `${stdout}\n${stderr}` };
  }
};

const ensureBuilt = async () => {
  if (!['token', 'prewarm'].every((fn) => existsSync(join(ROOT, 'dist', fn, 'handler.js')))) {
    await run(process.execPath, [join(ROOT, 'scripts', 'build.mjs')], { cwd: ROOT });
  }
};

/**
 * `osls package` of `stage` into a private temporary directory (parallel runs never clash; nothing is written into
 * the repo), removed again: what it printed and its exit code, for a stage expected to be refused.
 */
export const tryPackageStage = async (stage: string, params: StageParams = {}): Promise<OslsRun> => {
  await ensureBuilt();
  const dir = await mkdtemp(join(tmpdir(), 'token-broker-package-'));
  try {
    return await runOsls(['package', '--stage', stage, '--package', dir], params);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
};

/** Packages `stage` into a private temporary directory (parallel runs never clash; nothing is written into the repo). */
export const packageStage = async (stage = 'ci', params: StageParams = {}): Promise<PackagedStage> => {
  await ensureBuilt();
  const dir = await mkdtemp(join(tmpdir(), 'token-broker-package-'));
  const remove = () => rm(dir, { recursive: true, force: true });
  const { code, output } = await runOsls(['package', '--stage', stage, '--package', dir], params);
  if (code !== 0) {
    await remove();
    throw new Error(`osls package failed:\n${output}`);
  }
  const template = JSON.parse(
    await readFile(join(dir, 'cloudformation-template-update-stack.json'), 'utf8'),
  ) as CfnTemplate;
  const state = JSON.parse(await readFile(join(dir, 'serverless-state.json'), 'utf8')) as PackagedStage['state'];
  return { dir, template, state, output, remove };
};
