import type { Args, Limits } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';

import type { Store } from '../store/store.js';

/** Counters shown by STATS/INFO. Plain fields: incremented on the hot path. */
export class Stats {
  readonly startedAt = Date.now();
  connectionsTotal = 0;
  connectionsRejected = 0;
  commands = 0;
  getHits = 0;
  getMisses = 0;
  writes = 0;
  errors = 0;
  bytesIn = 0;
  bytesOut = 0;
}

/** What a command may touch. */
export interface Context {
  readonly store: Store;
  readonly stats: Stats;
  readonly limits: Limits;
  readonly nodeId: string;
  readonly version: string;
  readonly currentConnections: () => number;
  /** More `name:value` lines for STATS (replication's counters). */
  readonly extraStats?: () => string[];
}

/** What the connection does after a command: nothing special, or close once the reply is sent. */
export type Outcome = undefined | 'close';

/** One command: its words, how it parses its arguments, and how it runs. */
export interface Command<R> {
  readonly names: readonly string[];
  /** Completes "<CMD> command requires ..." in arity errors. */
  readonly requires: string;
  parse(args: Args): R;
  run(req: R, ctx: Context, out: Output): Outcome;
}
