// The stage's CloudWatch dashboard, `<service>-<stage>`: the broker at a glance, and where the runbook
// (docs/operations.md, "Runbook") sends whoever an alarm wakes.
//   - the alarms of infra/alarms.yml, their state;
//   - the token path: hits by layer, endpoint fetches and upstream requests, upstream latency and errors by kind,
//     lease waits, stale answers and the other degraded paths, refusals (and by reason, from the audit lines),
//     identity verifications, the callers parameter (stale, invalid), unusable cached items and suspected rollbacks,
//     cold starts;
//   - the functions: errors, throttles and duration (with the duration alarm's threshold).
// The broker's own metrics are EMF (functions/lib/shared/metrics.ts): namespace LimitrailTokenBroker, dimension
// FunctionName only. The package test checks that every metric plotted here is one the code emits, with exactly
// that dimension, and that every alarm of the stack is on the alarm widget.
'use strict';

const NAMESPACE = 'LimitrailTokenBroker';
const ALARMS = [
  'TokenErrorsAlarm',
  'TokenThrottlesAlarm',
  'TokenDurationAlarm',
  'PrewarmErrorsAlarm',
  'PrewarmThrottlesAlarm',
  'PrewarmDurationAlarm',
  'UpstreamFailureAlarm',
  'StaleAnswersAlarm',
  'RollbackSuspectedAlarm',
  'CallersStaleAlarm',
  'CallersParameterInvalidAlarm',
];
const WIDTH = 8;
const HEIGHT = 6;

/** One line of a metric widget: [namespace, name, FunctionName, fn, options]. */
const line = (namespace, name, fn, options = {}) => [namespace, name, 'FunctionName', fn, options];
const own = (name, fn, options) => line(NAMESPACE, name, fn, options);
/**
 * Every `<family>.<reason>` metric of one function (UpstreamError.upstream_timeout, ...), one line per reason: a
 * metric expression, which the dashboard body (an array of arrays) takes as a one-element array `[ { expression } ]`.
 */
const family = (name, fn, label) => [
  [
    {
      expression: `SEARCH('{${NAMESPACE},FunctionName} FunctionName="${fn}" MetricName=${name} NOT MetricName="${name}s"', 'Sum', 300)`,
      label,
      id: `${name.toLowerCase()}${fn.endsWith('prewarm') ? 'prewarm' : 'token'}`,
    },
  ],
];

const metricWidget = (title, metrics, properties = {}) => ({
  type: 'metric',
  properties: {
    title,
    region: '${AWS::Region}',
    view: 'timeSeries',
    stacked: false,
    stat: 'Sum',
    period: 300,
    metrics,
    ...properties,
  },
});

const logWidget = (title, logGroup, query) => ({
  type: 'log',
  properties: { title, region: '${AWS::Region}', view: 'table', query: `SOURCE '${logGroup}' | ${query}` },
});

/** Rows of three, the alarm widget across the top. */
const layout = (alarms, widgets) => [
  { ...alarms, x: 0, y: 0, width: 24, height: 3 },
  ...widgets.map((w, i) => ({
    ...w,
    x: (i % 3) * WIDTH,
    y: 3 + Math.floor(i / 3) * HEIGHT,
    width: WIDTH,
    height: HEIGHT,
  })),
];

const dashboardBody = ({ token, prewarm, durationAlarmMs, timeoutSec }) => {
  const lambda = (name, fn, options) => line('AWS/Lambda', name, fn, options);
  const alarms = {
    type: 'alarm',
    properties: { title: 'Alarms', alarms: ALARMS.map((id) => `\${${id}.Arn}`) },
  };
  const widgets = [
    metricWidget('Hits by layer', [
      own('MemoryHits', token, { label: 'memory' }),
      own('TableHits', token, { label: 'table' }),
      own('EndpointFetches', token, { label: 'token endpoint' }),
      own('Misses', token, { label: 'misses (memory and table)' }),
    ]),
    metricWidget('Endpoint fetches and upstream requests', [
      own('EndpointFetches', token, { label: 'answers fetched from the endpoint (token)' }),
      own('UpstreamRequests', token, { label: 'token requests sent (token)' }),
      own('UpstreamRequests', prewarm, { label: 'token requests sent (prewarm)' }),
    ]),
    metricWidget(
      'Upstream latency',
      [
        own('UpstreamLatency', token, { stat: 'p50', label: 'p50 (token)' }),
        own('UpstreamLatency', token, { stat: 'p99', label: 'p99 (token)' }),
        own('UpstreamLatency', token, { stat: 'Maximum', label: 'max (token)' }),
        own('UpstreamLatency', prewarm, { stat: 'p99', label: 'p99 (prewarm)' }),
      ],
      { yAxis: { left: { label: 'ms', showUnits: false } } },
    ),
    metricWidget('Upstream errors by kind', [
      own('UpstreamErrors', token, { label: 'all (token)' }),
      own('UpstreamErrors', prewarm, { label: 'all (prewarm)' }),
      own('RetriesExhausted', token, { label: 'retries exhausted (token)' }),
      ...family('UpstreamError', token, 'token'),
      ...family('UpstreamError', prewarm, 'prewarm'),
    ]),
    metricWidget('Client assertions (private_key_jwt)', [
      own('AssertionsSigned', token, { label: 'signed with KMS (token)' }),
      own('AssertionsSigned', prewarm, { label: 'signed with KMS (prewarm)' }),
      own('SigningErrors', token, { label: 'signing failures (token)' }),
      own('SigningErrors', prewarm, { label: 'signing failures (prewarm)' }),
      own('SigningLatency', token, { stat: 'p99', label: 'KMS Sign p99, ms (token)' }),
      ...family('SigningError', token, 'token'),
    ]),
    metricWidget('Lease waits', [
      own('LeaseWaits', token, { label: "waited for another container's refresh (token)" }),
      own('LeaseWaits', prewarm, { label: 'prewarm' }),
    ]),
    metricWidget('Stale answers and degraded paths', [
      own('StaleAnswers', token, { label: 'stale answers' }),
      own('TableBypass', token, { label: 'table bypassed' }),
      own('SecretFallback', token, { label: 'secret from the last good read' }),
      own('RetriesExhausted', token, { label: 'retries exhausted' }),
    ]),
    metricWidget('Refusals', [own('Refusals', token, { label: 'refusals (4xx and 5xx answers)' })]),
    logWidget(
      'Refusals by reason',
      `/aws/lambda/${token}`,
      'filter audit = "refused" | stats count(*) as refusals by reason, error, status | sort refusals desc | limit 20',
    ),
    metricWidget('Identity verifications', [
      own('IdentityVerifications', token, { label: 'verified with STS' }),
      own('IdentityCacheHits', token, { label: 'identity cache hits' }),
      own('IdentityFailures', token, { label: 'failures' }),
      ...family('IdentityFailure', token, 'failure'),
    ]),
    metricWidget('Callers parameter', [
      own('CallersStale', token, { label: 'authorized with an older value (stale)' }),
      own('CallersParameterInvalid', token, { label: 'invalid value read' }),
    ]),
    metricWidget('Unusable items and rollbacks', [
      own('UnusableItems', token, { label: 'unusable cached items (token)' }),
      own('DecryptFailures', token, { label: 'of which decrypt failures (token)' }),
      own('UnusableItems', prewarm, { label: 'unusable cached items (prewarm)' }),
      own('RollbackSuspected', token, { label: 'rolled-back tokens refused (token)' }),
    ]),
    metricWidget('Cold starts', [
      own('ColdStart', token, { label: 'token' }),
      own('ColdStart', prewarm, { label: 'prewarm' }),
    ]),
    metricWidget('Function errors', [
      lambda('Errors', token, { label: 'token' }),
      lambda('Errors', prewarm, { label: 'prewarm' }),
    ]),
    metricWidget('Function throttles', [
      lambda('Throttles', token, { label: 'token' }),
      lambda('Throttles', prewarm, { label: 'prewarm' }),
    ]),
    metricWidget(
      'Function duration',
      [
        lambda('Duration', token, { stat: 'p50', label: 'p50 (token)' }),
        lambda('Duration', token, { stat: 'p99', label: 'p99 (token)' }),
        lambda('Duration', token, { stat: 'Maximum', label: 'max (token)' }),
        lambda('Duration', prewarm, { stat: 'Maximum', label: 'max (prewarm)' }),
      ],
      {
        annotations: {
          horizontal: [
            { label: 'duration alarm', value: durationAlarmMs },
            { label: 'timeout', value: timeoutSec * 1000 },
          ],
        },
      },
    ),
  ];
  return { widgets: layout(alarms, widgets) };
};

module.exports = async ({ resolveVariable }) => {
  const service = await resolveVariable('self:service');
  const stage = await resolveVariable('sls:stage');
  const durationAlarmMs = Number(await resolveVariable('self:custom.durationAlarmMs'));
  const timeoutSec = Number(await resolveVariable('self:provider.timeout'));
  const body = dashboardBody({
    token: `${service}-${stage}-token`,
    prewarm: `${service}-${stage}-prewarm`,
    durationAlarmMs,
    timeoutSec,
  });
  return {
    Resources: {
      BrokerDashboard: {
        Type: 'AWS::CloudWatch::Dashboard',
        // The body is JSON; Fn::Sub fills in the region and the alarms' ARNs.
        Properties: { DashboardName: `${service}-${stage}`, DashboardBody: { 'Fn::Sub': JSON.stringify(body) } },
      },
    },
  };
};

module.exports.dashboardBody = dashboardBody;
