/**
 * The properties the model checks, by name (docs/design.md, "Testing the lease protocol", states each one), and the
 * violations the checks record. A check never throws inside the system under test (that would only become a
 * request's error): it records the violation, and the driver stops the run at the step that made it.
 */
export const PROPERTIES = {
  leaseStolen: 'a lease was taken from its holder before it ended (by any clock within the skew)',
  leaseTooLong: 'a lease was written ending later than REFRESH_LEASE_MS on its writer’s clock',
  leaseLeftBehind: 'a container finished all its requests and still holds a lease, though no table call failed',
  tokenWentBack: 'a token was replaced by one that expires earlier',
  writeOverLease: 'a token was written while another container held the lease',
  malformedItem: 'the table holds an item no broker could have written',
  forcedTooOften: 'forced refreshes of a key fetched more than once per FORCE_REFRESH_MIN_INTERVAL_SEC (less the skew)',
  concurrentFetch: 'two containers fetched a key at once while neither lease had run out',
  twoFetchesOneLease: 'one lease led to two fetches',
  redundantFetch:
    'a fetch under a lease taken while the table held a token not yet due (and no forced refresh claimed)',
  fetchWithoutLease: 'a fetch through the table path without holding the lease',
  bypassWithoutError: 'a fetch bypassing the table (in-memory lease) although no table call had failed',
  untypedError: 'a request threw something other than a BrokerError',
  foreignToken: 'an answer carried a token the endpoint never issued, or one for another scope set',
  tooShortLived: 'an answer’s token was expired or had less than the asked minTtlSeconds (stale: less than the floor)',
  rejectedServed: 'an answer was the token the caller reported rejected',
  pastDeadline: 'a request ended (or was still running) after its deadline',
  refusedWhileHealthy: 'a request with ample time failed although nothing had failed for a long while',
  prewarmThrew: 'a prewarm run threw',
  floatingRejection: 'a promise of the system rejected with nothing to handle it',
  noProgress: 'the system made steps without end (a loop that never waits)',
} as const;

export type PropertyName = keyof typeof PROPERTIES;

/**
 * Bugs the model found that are reported and not yet fixed (see docs/design.md, "Testing the lease protocol"): a
 * violation the checks recognize as one of these is counted apart, and the run goes on (unless strict).
 */
export const KNOWN_ISSUES = {
  pinnedByLatency:
    'a lease (or forced claim) written by a container whose clock runs ahead counts as pinned beyond reach for a ' +
    'take whose clock reading is a few ms older than the write: the "beyond reach" bound has no margin for the ' +
    'time a table call takes',
  refreshOutlastsMinTtl:
    'a request that refreshes ahead waits for the fetch; when it fails or times out, the request is answered the ' +
    'token it started with, which may meanwhile have dropped below its minTtlSeconds (to under a second), not stale',
  flightDeadline:
    "with overlapping invocations, a request joining another's in-flight miss waits on that one's deadline: past its " +
    'own, or failing early with the other’s time-out',
} as const;

export type KnownIssue = keyof typeof KNOWN_ISSUES;

export interface Violation {
  property: PropertyName;
  trueMs: number;
  detail: string;
  known?: KnownIssue;
}

export class ViolationError extends Error {
  constructor(readonly violation: Violation) {
    super(`${violation.property}: ${violation.detail}`);
  }
}

export class Violations {
  readonly found: Violation[] = [];
  /** Violations recognized as a known issue (not stopping the run). */
  readonly known: Violation[] = [];

  constructor(
    private readonly now: () => number,
    /** Known issues count as violations. */
    private readonly strict = false,
    /** Properties not checked (to see which others a break trips). */
    private readonly ignored: ReadonlySet<PropertyName> = new Set(),
  ) {}

  add(property: PropertyName, detail: string, known?: KnownIssue): void {
    if (this.ignored.has(property)) return;
    const violation = { property, trueMs: this.now(), detail, ...(known ? { known } : {}) };
    (known && !this.strict ? this.known : this.found).push(violation);
  }

  /** Stops the run at the first violation. */
  throwFirst(): void {
    const first = this.found[0];
    if (first) throw new ViolationError(first);
  }
}
