import { describe, expect, it } from 'vitest';
import { Metrics } from '../../functions/lib/metrics';

describe('EMF metrics', () => {
  it('writes one Embedded Metric Format line per flush with counts and samples', () => {
    const lines: string[] = [];
    const metrics = new Metrics((l) => lines.push(l));
    metrics.count('MemoryHits');
    metrics.count('MemoryHits');
    metrics.record('UpstreamLatency', 12, 'Milliseconds');
    metrics.record('UpstreamLatency', 30, 'Milliseconds');
    metrics.flush(1_795_000_000_000);
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toEqual({
      _aws: {
        Timestamp: 1_795_000_000_000,
        CloudWatchMetrics: [
          {
            Namespace: 'LimitrailTokenBroker',
            Dimensions: [['FunctionName']],
            Metrics: [
              { Name: 'MemoryHits', Unit: 'Count' },
              { Name: 'UpstreamLatency', Unit: 'Milliseconds' },
            ],
          },
        ],
      },
      FunctionName: 'local',
      MemoryHits: 2,
      UpstreamLatency: [12, 30],
    });
  });

  it('writes nothing when nothing was measured, and starts over after a flush', () => {
    const lines: string[] = [];
    const metrics = new Metrics((l) => lines.push(l));
    metrics.flush(1);
    metrics.count('Refusals');
    metrics.flush(2);
    metrics.flush(3);
    expect(lines).toHaveLength(1);
  });
});
