import { afterEach, describe, expect, it } from 'vitest';
import { EmfWriter, METRIC_NAMES, Metrics } from '../../../functions/lib/shared/metrics';
import { captureLogLines, stopCapturing } from '../../support/log-capture';

/** Powertools Metrics writes its EMF lines on stdout: capture them. */
let lines: string[] = [];
const capture = () => (lines = captureLogLines([]));
afterEach(() => stopCapturing(lines));

describe('EMF metrics', () => {
  it('writes one Embedded Metric Format line per flush with counts and samples, dimension FunctionName only, naming the invocation', () => {
    capture();
    const metrics = new Metrics(new EmfWriter('limitrail-token-broker-ci-token'), { requestId: 'req-1' });
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
      function_request_id: 'req-1',
      MemoryHits: 2,
      'UpstreamError.upstream_timeout': 1,
      UpstreamLatency: [12, 30],
    });
  });

  it('dates every line of an invocation with more samples than one EMF line holds (100 values per metric)', () => {
    capture();
    const metrics = new Metrics(new EmfWriter('limitrail-token-broker-ci-prewarm'), { requestId: 'req-2' });
    for (let i = 0; i < 150; i++) metrics.record('UpstreamLatency', i, 'Milliseconds');
    metrics.count('UpstreamRequests', 150);
    const at = Date.parse('2026-11-29T08:00:00Z');
    metrics.flush(at);
    const emf = lines.map(
      (l) => JSON.parse(l) as { _aws: { Timestamp: number }; UpstreamLatency: number[]; function_request_id: string },
    );
    expect(emf.length).toBeGreaterThanOrEqual(2);
    expect(emf.map((l) => l._aws.Timestamp)).toEqual(emf.map(() => at));
    expect(emf.map((l) => l.function_request_id)).toEqual(emf.map(() => 'req-2'));
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
    metrics.record('UpstreamLatency', 7, 'Milliseconds');
    metrics.flush(Date.now());
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[0]!)).toMatchObject({ FunctionName: 'local', Refusals: 1 });
    expect(JSON.parse(lines[1]!)).toMatchObject({ FunctionName: 'local', UpstreamLatency: 7 });
  });

  it("counts ColdStart once, in the line of an invocation that is its container's cold start", () => {
    capture();
    const metrics = new Metrics(new EmfWriter('fn'), { coldStart: true });
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
    new Metrics(new EmfWriter('fn'), { coldStart: true }).flush(Date.now());
    expect(lines.map((l) => JSON.parse(l))).toEqual([expect.objectContaining({ ColdStart: 1, FunctionName: 'fn' })]);
  });

  it("keeps each invocation's counts apart when invocations overlap over one writer", () => {
    capture();
    const writer = new EmfWriter('fn');
    const first = new Metrics(writer, { requestId: 'first' });
    const second = new Metrics(writer, { requestId: 'second' });
    first.count('MemoryHits');
    second.count('Refusals');
    first.record('UpstreamLatency', 5, 'Milliseconds');
    second.flush(Date.now());
    first.count('MemoryHits');
    first.flush(Date.now());
    const emitted = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(emitted).toEqual([
      expect.objectContaining({ function_request_id: 'second', Refusals: 1 }),
      expect.objectContaining({ function_request_id: 'first', MemoryHits: 2, UpstreamLatency: 5 }),
    ]);
    expect(emitted[0]).not.toHaveProperty('MemoryHits');
    expect(emitted[1]).not.toHaveProperty('Refusals');
  });
});
