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
 * The Lambda context keys of one invocation's lines, under the names Powertools' formatter writes them (cold_start,
 * function_arn, function_memory_size, function_name, function_request_id, tenant_id). Passed as a line's fields they
 * land where Powertools puts its own (its formatter has a slot for each), so a line reads as after `addContext`.
 */
export const lambdaContextFields = (context: Partial<Context>, coldStart: boolean): LogFields => ({
  cold_start: coldStart,
  function_arn: context.invokedFunctionArn,
  function_memory_size: context.memoryLimitInMB,
  function_name: context.functionName,
  function_request_id: context.awsRequestId,
  tenant_id: context.tenantId,
});

/**
 * The broker's logger: one Powertools logger per container, and the fields of this logger's lines. A child adds
 * fields (an invocation's Lambda context, a request id, a key) without a new Powertools logger. The Powertools
 * logger holds only what is the container's (service, level, replacer): an invocation's context is a child's
 * fields (shared/telemetry.ts), never set on the shared logger, so invocations running in one process at once
 * (Lambda Managed Instances) each log their own.
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
   * A line's fields: the call's first, in its order (a refusal's decision leads its line: broker/audit.ts), then this
   * logger's; the call's value wins where both name a field.
   */
  #lineFields(fields: LogFields): LogFields {
    return { ...fields, ...this.fields, ...fields };
  }

  debug(message: string, fields: LogFields = {}): void {
    this.powertools.debug(message, this.#lineFields(fields));
  }
  info(message: string, fields: LogFields = {}): void {
    this.powertools.info(message, this.#lineFields(fields));
  }
  warn(message: string, fields: LogFields = {}): void {
    this.powertools.warn(message, this.#lineFields(fields));
  }
  error(message: string, fields: LogFields = {}): void {
    this.powertools.error(message, this.#lineFields(fields));
  }
}
