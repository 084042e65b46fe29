/**
 * The callers of BROKER_CALLERS (config/grants.ts): fixed for the container's life, read at cold start. It revokes
 * nobody: a change, a revocation included, is a new deploy. The SSM parameter (ssm-caller-directory.ts) changes
 * without one.
 */
import type { CallerGrant, CallerList } from '../domain/caller';
import type { CallerDirectory } from '../ports';

export class StaticCallerDirectory implements CallerDirectory {
  readonly #list: Promise<CallerList>;

  constructor(grants: readonly CallerGrant[]) {
    this.#list = Promise.resolve({ grants, revoked: [] });
  }

  current(): Promise<CallerList> {
    return this.#list;
  }
}
