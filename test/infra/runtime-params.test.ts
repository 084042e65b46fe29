/**
 * infra/runtime.cjs on its own: the stage parameters `runtime` and `architecture` as serverless.yml resolves them
 * (provider.runtime, provider.architecture), the runtime a build targets, and the packaging check that a bundle was
 * not built for a newer Node than the stage deploys on. test/integration/package.test.ts shows osls refusing.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { ROOT } from '../support/stacks/packaged-stack';

type Resolver = (ctx: { resolveVariable: (name: string) => Promise<string> }) => Promise<string>;
interface RuntimeModule {
  SUPPORTED_RUNTIMES: string[];
  ARCHITECTURES: string[];
  esbuildTarget(runtime: string): string;
  stageRuntime(serverlessYml: string, stage: string | undefined): string;
  bundleProblem(distDir: string, runtime: string): string | undefined;
  runtime: Resolver;
  architecture: Resolver;
}
const runtimeModule = createRequire(import.meta.url)('../../infra/runtime.cjs') as RuntimeModule;
const resolve = (resolver: Resolver, params: Record<string, string>) =>
  resolver({
    resolveVariable: async (name) => {
      const value = params[name.replace(/^param:/, '')];
      if (value === undefined) throw new Error(`unexpected variable ${name}`);
      return value;
    },
  });

describe('the runtime and architecture parameters', () => {
  it('supports nodejs22.x and nodejs24.x, on arm64 or x86_64', () => {
    expect(runtimeModule.SUPPORTED_RUNTIMES).toEqual(['nodejs22.x', 'nodejs24.x']);
    expect(runtimeModule.ARCHITECTURES).toEqual(['arm64', 'x86_64']);
  });

  it('deploys the default stage on nodejs24.x and arm64', () => {
    const yml = readFileSync(join(ROOT, 'serverless.yml'), 'utf8');
    expect(runtimeModule.stageRuntime(yml, undefined)).toBe('nodejs24.x');
    expect(yml).toMatch(/^ {4}architecture: arm64$/m);
  });

  it.each(['nodejs20.x', 'nodejs26.x', 'nodejs24', 'node24', ''])('refuses runtime %j', async (runtime) => {
    await expect(resolve(runtimeModule.runtime, { runtime })).rejects.toThrow(
      `parameter runtime ${JSON.stringify(runtime)} must be one of nodejs22.x, nodejs24.x`,
    );
  });

  it.each(['aarch64', 'x86', 'ARM64', 'amd64'])('refuses architecture %j', async (architecture) => {
    await expect(resolve(runtimeModule.architecture, { architecture })).rejects.toThrow(
      `parameter architecture ${JSON.stringify(architecture)} must be one of arm64, x86_64`,
    );
  });

  it('passes a supported architecture through', async () => {
    expect(await resolve(runtimeModule.architecture, { architecture: 'x86_64' })).toBe('x86_64');
    expect(await resolve(runtimeModule.architecture, { architecture: 'arm64' })).toBe('arm64');
  });

  it("builds for the runtime's Node major", () => {
    expect(runtimeModule.esbuildTarget('nodejs24.x')).toBe('node24');
    expect(runtimeModule.esbuildTarget('nodejs22.x')).toBe('node22');
    expect(() => runtimeModule.esbuildTarget('nodejs20.x')).toThrow('must be one of nodejs22.x, nodejs24.x');
  });

  it("reads a stage's own runtime, else the default stage's, and refuses an unsupported one", () => {
    const yml = [
      'service: x',
      'params:',
      '  default:',
      '    region: eu-central-1',
      '    runtime: nodejs24.x',
      '  legacy:',
      '    runtime: "nodejs22.x" # until the migration',
      '  broken:',
      '    runtime: nodejs20.x',
      'provider:',
      '  runtime: ${file(infra/runtime.cjs):runtime}',
    ].join('\n');
    expect(runtimeModule.stageRuntime(yml, 'legacy')).toBe('nodejs22.x');
    expect(runtimeModule.stageRuntime(yml, 'prod')).toBe('nodejs24.x');
    expect(runtimeModule.stageRuntime(yml, undefined)).toBe('nodejs24.x');
    expect(() => runtimeModule.stageRuntime(yml, 'broken')).toThrow('parameter runtime "nodejs20.x" must be one of');
    expect(() => runtimeModule.stageRuntime('params:\n  default:\n    region: x\n', undefined)).toThrow(
      'serverless.yml sets no params.default.runtime',
    );
  });
});

describe('the packaging check of the bundles', () => {
  const dist = mkdtempSync(join(tmpdir(), 'runtime-params-'));
  afterAll(() => rmSync(dist, { recursive: true, force: true }));
  const built = (fn: string, runtime: string) => {
    mkdirSync(join(dist, fn), { recursive: true });
    writeFileSync(
      join(dist, fn, 'build.json'),
      JSON.stringify({ runtime, target: runtimeModule.esbuildTarget(runtime) }),
    );
  };

  it('packages bundles built for the same or an older Node than the runtime, refuses newer ones', () => {
    built('token', 'nodejs22.x');
    built('prewarm', 'nodejs22.x');
    expect(runtimeModule.bundleProblem(dist, 'nodejs22.x')).toBeUndefined();
    expect(runtimeModule.bundleProblem(dist, 'nodejs24.x')).toBeUndefined();
    built('prewarm', 'nodejs24.x');
    expect(runtimeModule.bundleProblem(dist, 'nodejs22.x')).toBe(
      "dist/prewarm was built for nodejs24.x, newer than the stage's runtime nodejs22.x: " +
        'run `npm run build -- --runtime nodejs22.x` (or --stage <stage>) before packaging',
    );
  });

  it('refuses bundles that say nothing of their runtime, or no dist/ at all', () => {
    mkdirSync(join(dist, 'other'));
    expect(runtimeModule.bundleProblem(dist, 'nodejs24.x')).toBe(
      'dist/other/build.json is missing: run `npm run build`',
    );
    expect(runtimeModule.bundleProblem(join(dist, 'absent'), 'nodejs24.x')).toBe(
      'dist/ is missing: run `npm run build`',
    );
  });
});
