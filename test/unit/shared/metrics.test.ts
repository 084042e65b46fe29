import { afterEach, describe, expect, it } from 'vitest';
import { METRIC_NAMES, Metrics } from '../../../functions/lib/shared/metrics';
import { captureLogLines, stopCapturing } from '../../support/log-capture';

/** Powertools Metrics writes its EMF lines on stdout: capture them. */
let lines: string[] = [];
const capture = () => (lines = captureLogLines([]));
afterEach(() => stopCapturing(lines));

describe('EMF metrics', () => {
  it('writes one Embedded Metric Format line per flush with counts and samples, dimension FunctionName only', () => {
    capture();
    const metrics = new Metrics('limitrail-token-broker-ci-token');
    metrics.count('MemoryHits');
    metrics.count('MemoryHits');
    metrics.record('UpstreamLatency', 12, 'Milliseconds');
    metrics.record('UpstreamLatency', 30, 'Milliseconds');
    metrics.count('UpstreamError.upstream_timeout');
    metrics.flush(Date.parse('2026-11-29T08:00:00Z'));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toEqual({
      _aws: {
        Timestamp: Date.parse('2026-11-29T08:00:00Z'),
        CloudWatchMetrics: [
          {
            Namespace: 'LimitrailTokenBroker',
            Dimensions: [['FunctionName']],
            Metrics: [
              { Name: 'MemoryHits', Unit: 'Count' },
              { Name: 'UpstreamError.upstream_timeout', Unit: 'Count' },
              { Name: 'UpstreamLatency', Unit: 'Milliseconds' },
            ],
          },
        ],
      },
      FunctionName: 'limitrail-token-broker-ci-token',
      MemoryHits: 2,
      'UpstreamError.upstream_timeout': 1,
      UpstreamLatency: [12, 30],
    });
  });

  it('dates every line of an invocation with more samples than one EMF line holds (100 values per metric)', () => {
    capture();
    const metrics = new Metrics('limitrail-token-broker-ci-prewarm');
    for (let i = 0; i < 150; i++) metrics.record('UpstreamLatency', i, 'Milliseconds');
    metrics.count('UpstreamRequests', 150);
    const at = Date.parse('2026-11-29T08:00:00Z');
    metrics.flush(at);
    const emf = lines.map((l) => JSON.parse(l) as { _aws: { Timestamp: number }; UpstreamLatency: number[] });
    expect(emf.length).toBeGreaterThanOrEqual(2);
    expect(emf.map((l) => l._aws.Timestamp)).toEqual(emf.map(() => at));
    expect(emf.flatMap((l) => l.UpstreamLatency)).toHaveLength(150);
    expect(emf.filter((l) => 'UpstreamRequests' in l)).toHaveLength(1); // counts once, never split off undated
  });

  it('writes nothing when nothing was measured, and starts over after a flush', () => {
    capture();
    const metrics = new Metrics();
    metrics.flush(Date.now());
    metrics.count('Refusals');
    metrics.flush(Date.now());
    metrics.flush(Date.now());
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ FunctionName: 'local', Refusals: 1 });
  });

  it("counts ColdStart in the first invocation of an on-demand container only, in that invocation's one line", () => {
    capture();
    const metrics = new Metrics('fn', true);
    metrics.count('TableHits');
    metrics.flush(Date.now());
    metrics.flush(Date.now());
    metrics.count('MemoryHits');
    metrics.flush(Date.now());
    const emitted = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(emitted).toHaveLength(2);
    expect(emitted[0]).toMatchObject({ ColdStart: 1, TableHits: 1 });
    expect(emitted[1]).not.toHaveProperty('ColdStart');
    expect(METRIC_NAMES).toContain('ColdStart');
  });

  it('writes the cold start on its own when the first invocation measured nothing else', () => {
    capture();
    new Metrics('fn', true).flush(Date.now());
    expect(lines.map((l) => JSON.parse(l))).toEqual([expect.objectContaining({ ColdStart: 1, FunctionName: 'fn' })]);
  });
});
