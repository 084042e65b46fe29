/**
 * The dependency rules of functions/: which part of the code may import which (docs/design.md, "Layout"). Read
 * from the import statements, as text; test/unit/architecture.test.ts holds the code to them.
 *
 *   entry points (functions/<name>/handler.ts) -> runtime.ts (the composition root) -> handlers -> broker
 *     -> { cache, upstream, callers } -> { ports.ts, config } -> domain -> shared
 *
 * A module may import its own part and the parts below it, never a part at its own level or above: the three adapter
 * parts (cache, upstream, callers) never import each other, and config imports only domain and shared. Nothing but
 * an entry point imports the composition root. Independently of the levels, no two folders may import each other,
 * directly or through others (no folder-level cycle).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

/** The part of a module path under functions/lib (`cache/lease/decisions.ts` -> `cache`); entry points apart. */
export const partOf = (modulePath: string): string => {
  const parts = modulePath.split('/');
  if (parts[0] !== 'lib') return 'entry';
  const top = parts[1] ?? '';
  return top.endsWith('.ts') ? top.slice(0, -3) : top;
};

/** Each part's level: a part imports only lower levels (and itself). */
export const LEVELS: Readonly<Record<string, number>> = {
  shared: 0,
  domain: 1,
  ports: 2,
  config: 2,
  cache: 3,
  upstream: 3,
  callers: 3,
  broker: 4,
  handlers: 5,
  runtime: 6,
  entry: 7,
};

/** A module and the modules it imports, paths relative to functions/ (`lib/cache/memory-cache.ts`). */
export type ImportGraph = ReadonlyMap<string, readonly string[]>;

const IMPORT = /^\s*(?:import|export)\b[^'"]*?from\s*'(\.{1,2}\/[^']+)'/gm;

/** The relative imports of every module under `root` (functions/), resolved to module paths. */
export const readImportGraph = (root: string): ImportGraph => {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts')) files.push(relative(root, path));
    }
  };
  walk(root);
  const known = new Set(files);
  return new Map(
    files.map((file) => {
      const text = readFileSync(join(root, file), 'utf8');
      const targets = [...text.matchAll(IMPORT)].map((m) => {
        const target = normalize(join(dirname(file), m[1]!));
        return known.has(`${target}.ts`) ? `${target}.ts` : known.has(target) ? target : `${target}/index.ts`;
      });
      return [file, targets];
    }),
  );
};

export interface Violation {
  from: string;
  to: string;
  rule: string;
}

/** Every import against the levels, and every folder-level cycle (named by one of its edges). */
export const violations = (graph: ImportGraph): Violation[] => {
  const found: Violation[] = [];
  const folderEdges = new Map<string, Set<string>>();
  for (const [from, targets] of graph) {
    for (const to of targets) {
      const a = partOf(from);
      const b = partOf(to);
      const la = LEVELS[a];
      const lb = LEVELS[b];
      if (la === undefined || lb === undefined) {
        found.push({ from, to, rule: `part ${la === undefined ? a : b} has no level` });
      } else if (a !== b && lb >= la) {
        found.push({ from, to, rule: `${a} (level ${la}) may not import ${b} (level ${lb})` });
      } else if (a === 'config' && !['config', 'domain', 'shared'].includes(b)) {
        found.push({ from, to, rule: `config imports only domain and shared, not ${b}` });
      }
      const fa = folderOf(from);
      const fb = folderOf(to);
      if (fa !== fb) (folderEdges.get(fa) ?? folderEdges.set(fa, new Set()).get(fa)!).add(fb);
    }
  }
  for (const [from, to] of folderCycleEdges(folderEdges)) {
    found.push({ from, to, rule: `folders ${from} and ${to} import each other (a cycle)` });
  }
  return found;
};

/** A module's folder; the top-level modules of lib (ports.ts, runtime.ts) each count as one. */
const folderOf = (modulePath: string): string =>
  dirname(modulePath) === 'lib' ? modulePath.replace(/\.ts$/, '') : dirname(modulePath);

/** One edge of each cycle in a folder graph (depth-first search; an edge back to a folder on the path). */
const folderCycleEdges = (edges: ReadonlyMap<string, ReadonlySet<string>>): [string, string][] => {
  const state = new Map<string, 'open' | 'done'>();
  const back: [string, string][] = [];
  const visit = (folder: string) => {
    state.set(folder, 'open');
    for (const next of edges.get(folder) ?? []) {
      if (state.get(next) === 'open') back.push([folder, next]);
      else if (!state.has(next)) visit(next);
    }
    state.set(folder, 'done');
  };
  for (const folder of edges.keys()) if (!state.has(folder)) visit(folder);
  return back;
};
