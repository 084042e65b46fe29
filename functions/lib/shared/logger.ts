/**
 * Structured JSON logs through Powertools for AWS Lambda (Logger), one line per event: the keys every other
 * Lambda function's logs carry (level, message, timestamp, service, cold_start, function_name,
 * function_request_id, xray_trace_id when tracing is on, sampling_rate) and the broker's audit fields. Info and
 * debug go to stdout, warnings and errors to stderr; CloudWatch keeps both as they are.
 *
 * Fields are ids, names, fingerprints, numbers and outcomes only. As a second line of defence, a JSON replacer
 * runs over every line before it is written: any field whose name means a credential is redacted, at any depth,
 * whether it was passed to the call, set on a child logger or kept as a Powertools persistent key; an error is
 * written as its name and code only, never its message, stack or cause (they may quote a request or a body).
 */
import { Logger as PowertoolsLogger } from '@aws-lambda-powertools/logger';
import type { LogLevel } from '@aws-lambda-powertools/logger/types';
import type { Context } from 'aws-lambda';

export type LogFields = Record<string, unknown>;

/** POWERTOOLS_SERVICE_NAME when it is set: the `service` key of every line. */
export const DEFAULT_SERVICE_NAME = 'limitrail-token-broker';
export const REDACTED = '[redacted]';

/** Field names meaning a credential, compared in lower case without separators (client_secret = clientSecret). */
const CREDENTIAL_FIELDS = new Set([
  'accesstoken',
  'refreshtoken',
  'idtoken',
  'token',
  'clientsecret',
  'secret',
  'secretstring',
  'secretaccesskey',
  'sessiontoken',
  'xamzsecuritytoken',
  'password',
  'authorization',
  'proxyauthorization',
  'cookie',
  'identityproof',
  'clientassertion',
]);

/** And any name ending like one (`bearerToken`, `apiKey`, `x_api_key`, `dbPassword`, `privateKey`, `requestSignature`). */
const CREDENTIAL_SUFFIX = /(token|secret|password|passphrase|apikey|privatekey|secretkey|signature)$/;

export const isCredentialField = (name: string): boolean => {
  const plain = name.toLowerCase().replace(/[^a-z0-9]/g, '');
  return CREDENTIAL_FIELDS.has(plain) || CREDENTIAL_SUFFIX.test(plain);
};

/** An error as it may be logged: its name, and its code when it has one (`ECONNREFUSED`, an SDK error code). */
const errorSummary = (err: Error): { name: string; code?: string | number } => {
  const { code } = err as { code?: unknown };
  return typeof code === 'string' || typeof code === 'number' ? { name: err.name, code } : { name: err.name };
};

/** The JSON replacer of every log line (Powertools calls it for each key at every depth, before its own rules). */
export const redactingReplacer = (key: string, value: unknown): unknown => {
  if (key !== '' && value !== undefined && isCredentialField(key)) return REDACTED;
  if (value instanceof Error) return errorSummary(value);
  return value;
};

/** Powertools' levels (Lambda's FATAL is its CRITICAL). */
const LEVELS = new Set<string>(['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'CRITICAL', 'SILENT'] satisfies LogLevel[]);

/**
 * The first valid level of AWS_LAMBDA_LOG_LEVEL (Lambda's Advanced Logging Controls, which Powertools lets no
 * other setting undercut), POWERTOOLS_LOG_LEVEL and LOG_LEVEL (the broker's former variable); INFO otherwise.
 */
export const logLevelFromEnv = (env: NodeJS.ProcessEnv): LogLevel => {
  for (const value of [env.AWS_LAMBDA_LOG_LEVEL, env.POWERTOOLS_LOG_LEVEL, env.LOG_LEVEL]) {
    const level = value?.trim().toUpperCase();
    if (level === 'FATAL') return 'CRITICAL';
    if (level && LEVELS.has(level)) return level as LogLevel;
  }
  return 'INFO';
};

/** A container's Powertools logger, configured from `env` (POWERTOOLS_SERVICE_NAME, the log level variables). */
export const createPowertoolsLogger = (env: NodeJS.ProcessEnv): PowertoolsLogger =>
  new PowertoolsLogger({
    serviceName: env.POWERTOOLS_SERVICE_NAME?.trim() || DEFAULT_SERVICE_NAME,
    logLevel: logLevelFromEnv(env),
    jsonReplacerFn: redactingReplacer,
  });

/** What the token path logs with (Logger; a silent or capturing fake in unit tests). */
export interface Log {
  child(fields: LogFields): Log;
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

/**
 * The broker's logger: one Powertools logger per container, and the fields of this logger's lines. A child adds
 * fields (a request id, a key) without a new Powertools logger, so the Lambda context added once per invocation
 * reaches every child, and cold_start is the container's, not the child's.
 */
export class Logger implements Log {
  constructor(
    readonly powertools: PowertoolsLogger,
    private readonly fields: LogFields = {},
  ) {}

  /** A logger whose lines all carry `fields` (for example the Lambda request id). */
  child(fields: LogFields): Logger {
    return new Logger(this.powertools, { ...this.fields, ...fields });
  }

  /**
   * Puts this invocation's Lambda context (request id, function name and version, cold start) on every line. What
   * the context lacks (a local runner's) comes from the variables Lambda sets, as Powertools reads the rest.
   */
  addContext(context: Partial<Context> | undefined): void {
    if (!context) return;
    const { AWS_LAMBDA_FUNCTION_NAME, AWS_LAMBDA_FUNCTION_VERSION, AWS_LAMBDA_FUNCTION_MEMORY_SIZE } = process.env;
    this.powertools.addContext({
      functionName: AWS_LAMBDA_FUNCTION_NAME,
      functionVersion: AWS_LAMBDA_FUNCTION_VERSION,
      memoryLimitInMB: AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
      ...context,
    } as Context);
  }

  debug(message: string, fields: LogFields = {}): void {
    this.powertools.debug(message, { ...this.fields, ...fields });
  }
  info(message: string, fields: LogFields = {}): void {
    this.powertools.info(message, { ...this.fields, ...fields });
  }
  warn(message: string, fields: LogFields = {}): void {
    this.powertools.warn(message, { ...this.fields, ...fields });
  }
  error(message: string, fields: LogFields = {}): void {
    this.powertools.error(message, { ...this.fields, ...fields });
  }
}
