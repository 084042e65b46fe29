/**
 * The documentation cannot drift from the code: docs/troubleshooting.md has an entry for every reason the broker
 * answers or logs, docs/configuration.md lists exactly the environment variables and stage parameters the code has,
 * docs/operations.md has a runbook entry per alarm, the README stays a short landing page, and every relative link
 * of the README and of docs/ resolves (anchors included). Each failure names what is missing or stale and where it
 * comes from (test/support/docs/markdown.ts reads the pages).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { ENV } from '../../functions/lib/config/env-names';
import { LOG_ONLY_REASONS, REASONS, UNUSABLE_ITEM_REASONS } from '../../functions/lib/shared/errors';
import { DEGRADED_METRIC } from '../../functions/lib/shared/metrics';
import {
  brokenLinks,
  firstCellNames,
  linksOf,
  missingEntries,
  type Page,
  readPage,
  sectionOf,
} from '../support/docs/markdown';

const ROOT = join(import.meta.dirname, '..', '..');
const read = (...path: string[]) => readFileSync(join(ROOT, ...path), 'utf8');
const page = (...path: string[]) => readPage(read(...path));
const filesIn = (dir: string, ext: string) =>
  readdirSync(join(ROOT, dir))
    .filter((f) => f.endsWith(ext))
    .map((f) => join(dir, f));
const DOCS = filesIn('docs', '.md');

/** Every .ts file under a folder of the repository, as text. */
const sourcesUnder = (dir: string): string =>
  (readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => readFileSync(join(e.parentPath, e.name), 'utf8'))
    .join('\n');

// ---------------------------------------------------------------------------------------------------------------
// (a) troubleshooting: every reason

const DEGRADED_KINDS = Object.keys(DEGRADED_METRIC);
const reasonSources = new Map<string, string>([
  ...REASONS.map((r) => [r, 'REASONS in functions/lib/shared/errors.ts'] as const),
  ...UNUSABLE_ITEM_REASONS.map((r) => [r, 'UNUSABLE_ITEM_REASONS in functions/lib/shared/errors.ts'] as const),
  ...LOG_ONLY_REASONS.map((r) => [r, 'LOG_ONLY_REASONS in functions/lib/shared/errors.ts'] as const),
]);
const degradedSource = 'a degraded kind, DEGRADED_METRIC in functions/lib/shared/metrics.ts';

/** Rows of the reason tables (header `reason`) and degraded tables (header `degraded`) naming what the code lacks. */
const staleTroubleshootingEntries = (doc: Page, name: string): string[] =>
  doc.tables.flatMap((table) => {
    const kind = table.header[0];
    const known = kind === 'reason' ? reasonSources : kind === 'degraded' ? new Set(DEGRADED_KINDS) : undefined;
    if (!known) return [];
    return firstCellNames([table], /./)
      .filter(({ name: entry }) => !known.has(entry))
      .map(
        ({ name: entry, line }) =>
          `${name}:${line} has an entry for ${kind} \`${entry}\`, which the code no longer has (not in ${
            kind === 'reason' ? 'REASONS, UNUSABLE_ITEM_REASONS or LOG_ONLY_REASONS' : 'DEGRADED_METRIC'
          }): remove or rename it`,
      );
  });

const troubleshootingProblems = (doc: Page, name = 'docs/troubleshooting.md'): string[] => [
  ...missingEntries(doc, name, [...reasonSources.keys()], (r) => reasonSources.get(r)!),
  ...missingEntries(doc, name, DEGRADED_KINDS, () => degradedSource),
  ...staleTroubleshootingEntries(doc, name),
];

describe('docs/troubleshooting.md', () => {
  it('has an entry for every reason the broker answers or logs, and for every degraded path', () => {
    expect(troubleshootingProblems(page('docs', 'troubleshooting.md'))).toEqual([]);
  });

  it('names a reason without an entry, where it comes from, and an entry the code no longer has', () => {
    const doc = readPage(
      [
        '## Some',
        '| reason | what |',
        '|---|---|',
        ...[...reasonSources.keys()].filter((r) => r !== 'proof_expired').map((r) => `| \`${r}\` | x |`),
        '| `caller_vanished` | x |',
        '### `stale_answer`, `table_bypass`, `secret_fallback`',
      ].join('\n'),
    );
    expect(troubleshootingProblems(doc, 'page.md')).toEqual([
      'page.md has no entry for `proof_expired` (REASONS in functions/lib/shared/errors.ts): add a table row or heading naming it',
      `page.md has no entry for \`retries_exhausted\` (${degradedSource}): add a table row or heading naming it`,
      expect.stringMatching(/^page\.md:\d+ has an entry for reason `caller_vanished`, which the code no longer has/),
    ]);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// (b) configuration: every variable and stage parameter, and nothing else

const BROKER_SOURCES = sourcesUnder('functions');
const POWERTOOLS_SOURCES = ['logger', 'metrics', 'commons']
  .map((pkg) => join('node_modules', '@aws-lambda-powertools', pkg, 'lib', 'esm'))
  .map(sourcesUnderJs)
  .join('\n');

function sourcesUnderJs(dir: string): string {
  return (readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
    .filter((e) => e.isFile() && e.name.endsWith('.js'))
    .map((e) => readFileSync(join(e.parentPath, e.name), 'utf8'))
    .join('\n');
}

/**
 * Why a variable the page lists that env-names.ts does not name still exists: the broker's code reads it (or names
 * it), Powertools reads it, or it is the AWS SDK's endpoint variable of a client the broker uses. Undefined: stale.
 */
const platformVariableSource = (name: string): string | undefined => {
  if (new RegExp(`\\b${name}\\b`).test(BROKER_SOURCES)) return 'functions/';
  if (name.startsWith('POWERTOOLS_') && POWERTOOLS_SOURCES.includes(name)) return 'Powertools';
  const service = /^AWS_ENDPOINT_URL_([A-Z0-9_]+)$/.exec(name)?.[1];
  const client = service && `@aws-sdk/client-${service.toLowerCase().replace(/_/g, '-')}`;
  return client && BROKER_SOURCES.includes(`'${client}'`) ? client : undefined;
};

const ENV_NAME = /^[A-Z][A-Z0-9_]*$/;
const PARAM_NAME = /^[a-z][A-Za-z0-9]*$/;

const environmentProblems = (doc: Page, envNames: readonly string[], name = 'docs/configuration.md'): string[] => {
  const section = sectionOf(doc, 'Environment variables');
  if (!section) return [`${name} has no "## Environment variables" section`];
  const listed = firstCellNames(section.tables, ENV_NAME);
  const names = new Set(listed.map((l) => l.name));
  return [
    ...envNames
      .filter((env) => !names.has(env))
      .map(
        (env) =>
          `${name} does not list the environment variable \`${env}\` (ENV in functions/lib/config/env-names.ts): add a row under "Environment variables"`,
      ),
    ...listed
      .filter(({ name: env }) => !envNames.includes(env) && platformVariableSource(env) === undefined)
      .map(
        ({ name: env, line }) =>
          `${name}:${line} lists the environment variable \`${env}\`, which neither env-names.ts, the code under functions/, Powertools nor an AWS SDK client the broker uses reads: remove it`,
      ),
  ];
};

/** serverless.yml as osls reads it, before any variable is resolved. */
const readServerlessYml = async (): Promise<{ params?: Record<string, Record<string, unknown> | null> }> =>
  (createRequire(import.meta.url)('osls/lib/configuration/read') as (path: string) => Promise<never>)(
    join(ROOT, 'serverless.yml'),
  );

/** Every stage parameter of the code: `param:NAME` in serverless.yml and infra/, and every key of a params block. */
const stageParametersOfCode = (raw: Awaited<ReturnType<typeof readServerlessYml>>): Map<string, string> => {
  const found = new Map<string, string>();
  const files = ['serverless.yml', ...filesIn('infra', '.yml'), ...filesIn('infra', '.cjs')];
  for (const file of files) {
    for (const [, param] of read(file).matchAll(/\bparam:([A-Za-z][A-Za-z0-9_]*)/g)) {
      if (!found.has(param!)) found.set(param!, file);
    }
  }
  for (const [stage, block] of Object.entries(raw.params ?? {})) {
    for (const param of Object.keys(block ?? {})) {
      if (!found.has(param)) found.set(param, `serverless.yml params.${stage}`);
    }
  }
  return found;
};

const stageParameterProblems = (doc: Page, code: Map<string, string>, name = 'docs/configuration.md'): string[] => {
  const section = sectionOf(doc, 'Stage parameters');
  if (!section) return [`${name} has no "## Stage parameters" section`];
  const listed = firstCellNames(section.tables, PARAM_NAME);
  const names = new Set(listed.map((l) => l.name));
  return [
    ...[...code]
      .filter(([param]) => !names.has(param))
      .map(
        ([param, where]) =>
          `${name} does not list the stage parameter \`${param}\` (used in ${where}): add a row under "Stage parameters"`,
      ),
    ...listed
      .filter(({ name: param }) => !code.has(param))
      .map(
        ({ name: param, line }) =>
          `${name}:${line} lists the stage parameter \`${param}\`, which serverless.yml and infra/ no longer use: remove it`,
      ),
  ];
};

describe('docs/configuration.md', () => {
  let raw: Awaited<ReturnType<typeof readServerlessYml>>;
  beforeAll(async () => {
    raw = await readServerlessYml();
  });

  it('lists every environment variable of env-names.ts, and only variables something reads', () => {
    expect(environmentProblems(page('docs', 'configuration.md'), Object.values(ENV))).toEqual([]);
  });

  it('lists every stage parameter of serverless.yml and infra/, and only those', () => {
    expect(stageParameterProblems(page('docs', 'configuration.md'), stageParametersOfCode(raw))).toEqual([]);
  });

  it('finds stage parameters in every place the code has them', () => {
    const code = stageParametersOfCode(raw);
    // ${param:...} in serverless.yml, resolveVariable('param:...') in infra/*.cjs, a key set only in a params block.
    expect(code.get('tokenTableName')).toBe('serverless.yml');
    expect(code.get('invokePrincipals')).toBe('infra/caller-access.cjs');
    expect(code.get('architecture')).toBe('infra/runtime.cjs');
    expect([...code.keys()]).toEqual(expect.arrayContaining(['limitrailTokenUrl', 'tokenReservedConcurrency']));
    const withOwnBlock = stageParametersOfCode({ params: { ...raw.params, mine: { onlyHere: 'x' } } });
    expect(withOwnBlock.get('onlyHere')).toBe('serverless.yml params.mine');
  });

  it('names a variable or parameter the page lacks, and one it lists that the code lacks', () => {
    const doc = readPage(
      [
        '## Stage parameters',
        '| parameter | meaning |',
        '|---|---|',
        '| `callerAuth` | x |',
        '| `limitrailAudience` | gone |',
        '## Environment variables',
        '| variable | meaning |',
        '|---|---|',
        '| `CALLER_AUTH` | x |',
        '| `AWS_ENDPOINT_URL_KMS` | the SDK client-kms reads it |',
        '| `POWERTOOLS_LOGGER_SAMPLE_RATE` | Powertools reads it |',
        '| `BROKER_CALLERS_TTL_SEC` | gone |',
        '| `AWS_ENDPOINT_URL_SQS` | no SQS client |',
      ].join('\n'),
    );
    expect(environmentProblems(doc, ['CALLER_AUTH', 'CALLERS_MAX_AGE_SEC'], 'page.md')).toEqual([
      'page.md does not list the environment variable `CALLERS_MAX_AGE_SEC` (ENV in functions/lib/config/env-names.ts): add a row under "Environment variables"',
      expect.stringMatching(/^page\.md:12 lists the environment variable `BROKER_CALLERS_TTL_SEC`, which neither/),
      expect.stringMatching(/^page\.md:13 lists the environment variable `AWS_ENDPOINT_URL_SQS`, which neither/),
    ]);
    const code = new Map([
      ['callerAuth', 'serverless.yml'],
      ['callersParameter', 'infra/callers.yml'],
    ]);
    expect(stageParameterProblems(doc, code, 'page.md')).toEqual([
      'page.md does not list the stage parameter `callersParameter` (used in infra/callers.yml): add a row under "Stage parameters"',
      'page.md:5 lists the stage parameter `limitrailAudience`, which serverless.yml and infra/ no longer use: remove it',
    ]);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// operations: a runbook entry per alarm

describe('docs/operations.md', () => {
  it('has a runbook entry (a heading naming it) for every alarm of infra/alarms.yml', () => {
    const alarms = [...read('infra', 'alarms.yml').matchAll(/^ {2}(\w+Alarm):\s*$/gm)].map((m) => m[1]!);
    expect(alarms.length).toBeGreaterThan(0);
    const runbook = page('docs', 'operations.md').headings.filter((h) => h.level === 3);
    const named = new Set(runbook.flatMap((h) => [...h.text.matchAll(/`(\w+Alarm)`/g)].map((m) => m[1]!)));
    expect(alarms.filter((a) => !named.has(a)).map((a) => `no runbook heading names \`${a}\``)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// (c) the README and the links

describe('README.md', () => {
  const readme = read('README.md');

  it('is a landing page of at most 160 lines', () => {
    expect(readme.split('\n').length, 'README.md: move the detail to a docs/ page').toBeLessThanOrEqual(160);
  });

  it('shows the two set-up commands', () => {
    expect(readme).toContain('```sh\nnpm ci && npm start\n```');
    expect(readme).toContain('```sh\nnpm test\n```');
  });

  it('links to every docs page, and only to docs pages that exist', () => {
    const targets = linksOf(readPage(readme)).map((l) => l.target.split('#')[0]!);
    const docs = new Set(targets.filter((t) => t.startsWith('docs/')));
    expect(DOCS.filter((d) => !docs.has(d)).map((d) => `README.md does not link to ${d}`)).toEqual([]);
    expect(brokenLinks(join(ROOT, 'README.md'), ROOT)).toEqual([]);
  });
});

describe('links', () => {
  it.for([...DOCS, 'clients/node/README.md', 'clients/python/README.md'])(
    'every relative link of %s resolves, anchors included',
    (file) => {
      expect(brokenLinks(join(ROOT, file), ROOT)).toEqual([]);
    },
  );

  it("the client packages' READMEs send callers to docs/callers.md", () => {
    for (const file of ['clients/node/README.md', 'clients/python/README.md']) {
      expect(linksOf(page(file)).map((l) => l.target)).toContain('../../docs/callers.md');
    }
  });

  it('names a missing page and a missing anchor', () => {
    const problems = brokenLinks(join(ROOT, 'test', 'support', 'docs', 'broken-links.md'), ROOT);
    expect(problems).toEqual([
      'test/support/docs/broken-links.md:3 links to ../../../docs/nowhere.md, but docs/nowhere.md does not exist',
      'test/support/docs/broken-links.md:4 links to ../../../docs/callers.md#no-such-heading, but docs/callers.md has no heading with the anchor #no-such-heading',
      'test/support/docs/broken-links.md:5 links to #not-here, but test/support/docs/broken-links.md has no heading with the anchor #not-here',
    ]);
  });
});
