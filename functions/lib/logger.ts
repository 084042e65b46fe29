/**
 * Structured JSON logs, one line per event, on stdout (CloudWatch keeps them as they are). Fields are ids,
 * names, fingerprints, numbers and outcomes only; as a second line of defence, fields whose names mean a
 * credential are replaced before anything is written.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;
export type LogSink = (line: string) => void;

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const CREDENTIAL_FIELDS = new Set([
  'access_token',
  'accesstoken',
  'token',
  'client_secret',
  'clientsecret',
  'secret',
  'secretstring',
  'password',
  'authorization',
]);

export const stdoutSink: LogSink = (line) => {
  process.stdout.write(`${line}\n`);
};

const scrub = (fields: LogFields): LogFields => {
  const out: LogFields = {};
  for (const [key, value] of Object.entries(fields)) {
    if (CREDENTIAL_FIELDS.has(key.toLowerCase())) out[key] = '[redacted]';
    else if (value instanceof Error) out[key] = { name: value.name }; // messages and causes may quote anything
    else out[key] = value;
  }
  return out;
};

export const parseLogLevel = (value: string | undefined): LogLevel => {
  const level = value?.trim().toLowerCase();
  return level && level in LEVELS ? (level as LogLevel) : 'info';
};

export class Logger {
  constructor(
    private readonly sink: LogSink = stdoutSink,
    private readonly level: LogLevel = 'info',
    private readonly base: LogFields = {},
  ) {}

  /** A logger whose lines all carry `fields` (for example the Lambda request id). */
  child(fields: LogFields): Logger {
    return new Logger(this.sink, this.level, { ...this.base, ...fields });
  }

  debug(message: string, fields: LogFields = {}): void {
    this.#write('debug', message, fields);
  }
  info(message: string, fields: LogFields = {}): void {
    this.#write('info', message, fields);
  }
  warn(message: string, fields: LogFields = {}): void {
    this.#write('warn', message, fields);
  }
  error(message: string, fields: LogFields = {}): void {
    this.#write('error', message, fields);
  }

  #write(level: LogLevel, message: string, fields: LogFields): void {
    if (LEVELS[level] < LEVELS[this.level]) return;
    const line = { level, message, timestamp: new Date().toISOString(), ...this.base, ...scrub(fields) };
    this.sink(JSON.stringify(line));
  }
}
