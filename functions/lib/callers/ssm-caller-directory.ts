/**
 * The callers from the SSM parameter BROKER_CALLERS_PARAMETER (config/caller-list.ts), read with Powertools
 * Parameters (SSMProvider, which caches the value in memory for `maxAge` = CALLERS_MAX_AGE_SEC): a change of the
 * parameter reaches every container within that time, without a deploy. A request between two reads costs one
 * lookup in memory; an unchanged value is not parsed again.
 *
 * When the value cannot be used, the container keeps the last valid value it read (last known good), logs it and
 * counts `CallersStale` on every request so served:
 *   - the parameter cannot be read (SSM down, throttled, deleted, access denied): one read per max age, not one per
 *     request, until it succeeds;
 *   - the value read is invalid (a configuration error, logged in detail once per value): `CallersParameterInvalid`.
 * A container that never read a valid value answers every caller: 503 `callers_unavailable` when SSM failed (read
 * again after a second), 500 `config_invalid` when the value is invalid or the parameter missing or forbidden.
 * Never a token either way: without a caller list nobody is authorized.
 */

import { parseCallerList } from '../config/caller-list';
import type { GrantOptions } from '../config/grants';
import type { CallerList } from '../domain/caller';
import type { CallersParameter } from '../domain/settings';
import type { CallerDirectory, Clock, Log, MetricsSink } from '../ports';
import { describeAwsError, isUnavailable } from '../shared/aws-errors';
import { type BrokerError, ConfigurationError, UnavailableError } from '../shared/errors';
import { SingleFlight } from '../shared/single-flight';

/** What the directory needs of Powertools' SSMProvider: a cached read of one parameter. */
export interface ParameterReader {
  get(name: string, options: { maxAge: number }): Promise<unknown>;
}

export interface SsmCallerDirectoryOptions {
  parameter: CallersParameter;
  /** Each client's scopes (BROKER_CLIENTS): grants name only these. */
  clientScopes: ReadonlyMap<string, ReadonlySet<string>>;
  grantOptions: GrantOptions;
  clock: Clock;
}

/** A cold container that could not read the parameter tries again after this long (it answers 503 meanwhile). */
export const COLD_RETRY_MS = 1_000;

const MISCONFIGURED =
  'the broker is misconfigured (its callers parameter cannot be used); the platform team can find the cause in its logs';

type Parsed = { list: CallerList } | { error: ConfigurationError };

export class SsmCallerDirectory implements CallerDirectory {
  readonly #reads = new SingleFlight<string, unknown>();
  /** The last value parsed and what it gave, so that a value read again unchanged is not parsed again. */
  #last: { text: unknown; parsed: Parsed } | undefined;
  /** The last valid value: what the container keeps serving while the parameter cannot be used. */
  #good: CallerList | undefined;
  /** After a failed read: no read before this (epoch ms); the last valid value (or the same refusal) meanwhile. */
  #retryAtMs = 0;
  #lastFailure: BrokerError | undefined;
  /** Whether the last read or parse failed: the next valid value is logged as the recovery. */
  #failing = false;

  constructor(
    private readonly reader: ParameterReader,
    private readonly options: SsmCallerDirectoryOptions,
  ) {}

  async current(log: Log, metrics?: MetricsSink): Promise<CallerList> {
    const { name, maxAgeSec } = this.options.parameter;
    if (this.#retryAtMs > this.options.clock.nowMs()) return this.#fallback(this.#lastFailure!, metrics);
    let text: unknown;
    try {
      text = await this.#reads.run(name, () => this.reader.get(name, { maxAge: maxAgeSec }));
    } catch (err) {
      return this.#unreadable(err, log, metrics);
    }
    const parsed = this.#parse(text, log);
    if ('error' in parsed) {
      metrics?.count('CallersParameterInvalid');
      return this.#fallback(new ConfigurationError(MISCONFIGURED, 'config_invalid'), metrics);
    }
    if (this.#failing) {
      this.#failing = false;
      log.info('callers parameter valid again', { parameter: name });
    }
    this.#good = parsed.list;
    return parsed.list;
  }

  /** The value's parse, once per value: an invalid one is logged when first seen (the detail names the field). */
  #parse(text: unknown, log: Log): Parsed {
    if (this.#last && this.#last.text === text) return this.#last.parsed;
    const { parameter, clientScopes, grantOptions } = this.options;
    let parsed: Parsed;
    try {
      const value = typeof text === 'string' ? text : undefined;
      parsed = { list: parseCallerList(value, clientScopes, `the callers parameter ${parameter.name}`, grantOptions) };
    } catch (err) {
      if (!(err instanceof ConfigurationError)) throw err;
      parsed = { error: err };
      this.#failing = true;
      log.error('callers parameter invalid', {
        parameter: parameter.name,
        reason: err.reason,
        problem: err.message,
        keeping: this.#good ? 'the last valid value' : 'nothing: every caller is refused',
      });
    }
    this.#last = { text, parsed };
    return parsed;
  }

  /** A read failed: back off (a max age with a valid value in hand, a second without), then fall back. */
  #unreadable(err: unknown, log: Log, metrics?: MetricsSink): CallerList {
    const { parameter, clock } = this.options;
    const cause = (err as { cause?: unknown }).cause ?? err;
    const failure = isUnavailable(cause)
      ? new UnavailableError(
          'the list of callers cannot be read now (SSM Parameter Store is unavailable); try again shortly',
          'callers_unavailable',
          { retryAfterSeconds: Math.ceil(COLD_RETRY_MS / 1000) },
        )
      : new ConfigurationError(MISCONFIGURED, 'config_invalid');
    this.#retryAtMs = clock.nowMs() + (this.#good ? parameter.maxAgeSec * 1000 : COLD_RETRY_MS);
    this.#lastFailure = failure;
    this.#failing = true;
    log[this.#good ? 'warn' : 'error']('callers parameter unreadable', {
      parameter: parameter.name,
      reason: failure.reason,
      error: describeAwsError(cause),
      keeping: this.#good ? 'the last valid value' : 'nothing: every caller is refused',
    });
    return this.#fallback(failure, metrics);
  }

  /** The last valid value (counted as stale), or the refusal when the container never had one. */
  #fallback(failure: BrokerError, metrics?: MetricsSink): CallerList {
    if (!this.#good) throw failure;
    metrics?.count('CallersStale');
    return this.#good;
  }
}
