/**
 * What `npm start` shows of the functions' output (serverless-offline's lines, pure). By default one readable line
 * per token request, from the broker's audit line: time, caller, client, scopes, where the token came from, status
 * (and "cold start" on a container's first invocation); warnings and errors as one line each; the other JSON lines
 * (debug details, the EMF metrics line) and serverless-offline's per-invocation duration line are left out.
 * `npm start -- --json` shows every line as it came.
 *
 *   12:00:01  limitrail-demo-caller/npm-start  limitrail  limitrail.usage.write  endpoint  200 (cold start)
 *   12:00:09  limitrail-demo-nogrant/npm-run-token  -  -  -  403 access_denied (caller_not_granted): caller "…" has no grant
 */

type LogLine = Record<string, unknown>;

const parse = (line: string): LogLine | undefined => {
  if (!line.startsWith('{')) return undefined;
  try {
    const value: unknown = JSON.parse(line);
    return value && typeof value === 'object' && !Array.isArray(value) ? (value as LogLine) : undefined;
  } catch {
    return undefined;
  }
};

/** The EMF metrics line every invocation ends with (Powertools Metrics / functions/lib/shared/metrics.ts). */
export const isMetricsLine = (line: string): boolean => parse(line.trim())?._aws !== undefined;

/** serverless-offline's `(λ: token) RequestId: … Duration: … Billed Duration: …` after each invocation. */
const DURATION_LINE = /^\(λ: [^)]+\) RequestId: \S+\s+Duration: /;

/** HH:MM:SS of the line's ISO timestamp, in this machine's time zone. */
const timeOf = (log: LogLine): string => {
  const ms = typeof log.timestamp === 'string' ? Date.parse(log.timestamp) : Number.NaN;
  return (Number.isNaN(ms) ? new Date() : new Date(ms)).toTimeString().slice(0, 8);
};

/** `role/session` of an assumed-role ARN, `user/name` of an IAM user; anything else as it is. */
export const shortCaller = (caller: unknown): string => {
  if (typeof caller !== 'string' || caller === '') return '-';
  const arn = /^arn:[^:]+:(?:sts|iam)::\d{12}:(.+)$/.exec(caller);
  if (!arn) return caller;
  const resource = arn[1]!;
  return resource.startsWith('assumed-role/') ? resource.slice('assumed-role/'.length) : resource;
};

const text = (value: unknown): string =>
  Array.isArray(value)
    ? value.join(' ') || '-'
    : (typeof value === 'string' && value !== '') || typeof value === 'number'
      ? String(value)
      : '-';

const requestLine = (log: LogLine): string => {
  const fields = [timeOf(log), shortCaller(log.caller), text(log.client), text(log.scopes)];
  const cold = log.cold_start === true ? ' (cold start)' : '';
  if (log.audit === 'issued') return [...fields, text(log.source), `200${cold}`].join('  ');
  const reason = typeof log.reason === 'string' ? ` (${log.reason})` : '';
  const detail = typeof log.detail === 'string' && log.detail !== '' ? `: ${log.detail}` : '';
  return [...fields, '-', `${text(log.status)} ${text(log.error)}${reason}${detail}${cold}`].join('  ');
};

/** Numbers and short strings of a summary line (`prewarm run`), as key=value. */
const summary = (log: LogLine, skip: Set<string>): string =>
  Object.entries(log)
    .filter(([key, value]) => !skip.has(key) && (typeof value === 'number' || typeof value === 'boolean'))
    .map(([key, value]) => `${key}=${value}`)
    .join(' ');

/** Powertools' own keys on every line, not worth repeating on the console. */
const CONTEXT_KEYS = new Set([
  'level',
  'message',
  'timestamp',
  'service',
  'cold_start',
  'function_arn',
  'function_memory_size',
  'function_name',
  'function_request_id',
  'sampling_rate',
  'requestId',
  'xray_trace_id',
]);

/**
 * The console line for one line the functions (or serverless-offline) printed, without the `λ` prefix; undefined to
 * leave it out. With `json`, every line as it came.
 */
export const consoleLine = (raw: string, options: { json: boolean }): string | undefined => {
  const line = raw.trimEnd();
  if (line.trim() === '') return undefined;
  if (options.json) return line;
  const log = parse(line.trim());
  if (!log) return DURATION_LINE.test(line.trim()) ? undefined : line;
  if (log._aws !== undefined) return undefined;
  if (log.audit === 'issued' || log.audit === 'refused') return requestLine(log);
  const level = typeof log.level === 'string' ? log.level : 'INFO';
  if (level === 'WARN' || level === 'ERROR' || level === 'CRITICAL') {
    const why = [log.reason, log.detail].filter((v) => typeof v === 'string' && v !== '').join(': ');
    return `${timeOf(log)}  ${level}  ${text(log.message)}${why ? ` (${why})` : ''}`;
  }
  if (log.message === 'prewarm run') return `${timeOf(log)}  prewarm  ${summary(log, CONTEXT_KEYS)}`;
  return undefined;
};
