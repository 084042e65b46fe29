import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type ImportGraph, readImportGraph, violations } from '../support/architecture/rules';

/**
 * The dependency direction of functions/ (test/support/architecture/rules.ts): handlers -> broker -> adapters ->
 * ports and domain -> shared, the composition root above them all, and no folder-level cycle.
 */
const FUNCTIONS = join(import.meta.dirname, '..', '..', 'functions');

describe('the architecture of functions/', () => {
  it('imports only downwards, with no folder-level cycle', () => {
    const graph = readImportGraph(FUNCTIONS);
    expect(graph.size).toBeGreaterThan(40);
    expect(violations(graph)).toEqual([]);
  });

  describe('the check can fail', () => {
    const real = readImportGraph(FUNCTIONS);
    const plus = (from: string, to: string): ImportGraph =>
      new Map([...real].map(([m, targets]) => [m, m === from ? [...targets, to] : targets]));

    it('finds a domain module importing an adapter', () => {
      expect(violations(plus('lib/domain/cached-token.ts', 'lib/cache/memory-cache.ts'))).toEqual([
        expect.objectContaining({
          from: 'lib/domain/cached-token.ts',
          rule: 'domain (level 1) may not import cache (level 3)',
        }),
        expect.objectContaining({ rule: expect.stringContaining('import each other') }),
      ]);
    });

    it('finds two adapter parts importing each other, and a module importing the composition root', () => {
      const wrong = violations(plus('lib/upstream/token-endpoint.ts', 'lib/callers/grants.ts'));
      expect(wrong.map((v) => v.rule)).toContain('upstream (level 3) may not import callers (level 3)');
      const root = violations(plus('lib/broker/token-broker.ts', 'lib/runtime.ts'));
      expect(root.map((v) => v.rule)).toContain('broker (level 4) may not import runtime (level 6)');
    });

    it('finds config importing an adapter part or the ports', () => {
      expect(violations(plus('lib/config/clients.ts', 'lib/ports.ts')).map((v) => v.rule)).toContain(
        'config (level 2) may not import ports (level 2)',
      );
    });

    it('finds a folder-level cycle inside one part', () => {
      const cycle = violations(plus('lib/cache/lease/lease-rules.ts', 'lib/cache/table/table-schema.ts'));
      expect(cycle).toEqual([expect.objectContaining({ rule: expect.stringContaining('import each other') })]);
    });
  });
});
