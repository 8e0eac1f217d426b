import type { Args } from '../protocol/args.js';
import type { Limits } from '../rules.js';
import type { Outcome } from '../protocol/dialect.js';
import type { Output } from '../protocol/output.js';

import type { AntiEntropy } from '../antientropy/antientropy.js';
import type { Backups } from '../backups.js';
import type { PeerProof } from '../antientropy/handshake.js';
import type { ReloadResult } from '../config/reload.js';
import type { Access, Authenticator, Session } from '../security/auth.js';
import type { Capacity, Store } from '../store/index.js';

/** Upper bounds (seconds) of the request latency histogram's buckets (metrics/metrics.ts). */
export const LATENCY_BOUNDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5] as const;

/** Counters shown by STATS/INFO. Plain fields: incremented on the hot path. */
export class Stats {
  readonly startedAt = Date.now();
  /** Requests of each command (by CommandEntry.id), and how many of them were answered ERROR at once. */
  readonly calls: Float64Array;
  readonly failures: Float64Array;
  connectionsTotal = 0;
  connectionsRejected = 0;
  commands = 0;
  getHits = 0;
  getMisses = 0;
  writes = 0;
  errors = 0;
  bytesIn = 0;
  bytesOut = 0;
  /** Anti-entropy, answering side: key hashes asked for by peers, and pushed records applied here. */
  antiEntropyServed = 0;
  antiEntropyApplied = 0;
  /** AUTH attempts refused. */
  authFailures = 0;
  /** TLS handshakes that failed (no or untrusted client certificate, not TLS at all, ...). */
  tlsHandshakeFailures = 0;

  /**
   * Requests by latency: how many took at most LATENCY_BOUNDS[i] (not cumulative; the last slot counts
   * the slower ones), and the sum of their latencies in seconds.
   */
  readonly latency = new Float64Array(LATENCY_BOUNDS.length + 1);
  latencySum = 0;

  /** `commands`: each command's name by its id (COMMAND_NAMES). */
  constructor(readonly commandNames: readonly string[]) {
    this.calls = new Float64Array(commandNames.length);
    this.failures = new Float64Array(commandNames.length);
  }

  /** Counts `requests` requests answered `seconds` after they were read (one batch of a connection). */
  observeLatency(seconds: number, requests: number): void {
    let i = 0;
    while (i < LATENCY_BOUNDS.length && seconds > (LATENCY_BOUNDS[i] as number)) i++;
    (this.latency[i] as number) += requests;
    this.latencySum += seconds * requests;
  }

  /** Requests of the command named (its first name), 0 for a name that is not a command. */
  callsOf(name: string): number {
    return this.calls[this.commandNames.indexOf(name)] ?? 0;
  }
}

/** A client connection, as CLIENT LIST shows it. */
export interface ClientInfo {
  readonly id: number;
  /** `host:port` of the client. */
  readonly address: string;
  readonly openedAt: number;
  /** When its last bytes came in (ms since the epoch). */
  readonly lastActivity: number;
  /** Its last command's name (`NULL` before the first). */
  readonly lastCommand: string;
}

/** Replication switched at run time (REPLICATE). */
export interface ReplicationSwitch {
  readonly enabled: boolean;
  setEnabled(on: boolean): void;
}

/** What a command may touch. */
export interface Context {
  readonly store: Store;
  readonly stats: Stats;
  readonly limits: Limits;
  readonly nodeId: string;
  readonly version: string;
  readonly currentConnections: () => number;
  /** The open client connections (CLIENT LIST). */
  readonly clients: () => Iterable<ClientInfo>;
  /** `[storage] memory_limit_mb` (store/capacity.ts): checked by the store on every client write, by MSET whole. */
  readonly capacity: Capacity;
  /** BACKUP and the scheduled backups (backups.ts). */
  readonly backups: Pick<Backups, 'take' | 'figures'>;
  /** Present when `[mqtt] enabled`. */
  readonly replication: ReplicationSwitch | undefined;
  /** Runs SYNC's exchanges (and the periodic ones). */
  readonly antiEntropy: Pick<AntiEntropy, 'syncWith'>;
  /** Proves and checks anti-entropy peers (antientropy/handshake.ts). */
  readonly peerProof: PeerProof;
  /** Checks AUTH (security/auth.ts). */
  readonly auth: Authenticator;
  /** CONFIG RELOAD: re-reads the configuration and applies what can change live (config/reload.ts); absent: it cannot. */
  readonly reloadConfig?: () => ReloadResult;
  /** `[security] admin_commands`: false refuses admin commands (TRUNCATE, FLUSHDB, SYNC) to everyone. */
  readonly adminCommands: boolean;
  /** The `name:value` lines of STATS replication and STATS antientropy. */
  readonly sectionStats: { readonly replication: () => string[]; readonly antientropy: () => string[]; readonly peers: () => string[] };
}

/**
 * One command: its words, how it parses its arguments, and how it runs. A command file exports its
 * object `as const satisfies Command<ItsRequest>`, so what `parse` returns is what `execute` takes;
 * commands/index.ts lists it once.
 */
export interface Command<R> {
  readonly names: readonly string[];
  /** Completes "<CMD> command requires ..." in arity errors. */
  readonly requires: string;
  /** What the connection must have proven to run it (checked before parsing, commands/dialect.ts). */
  readonly access: Access;
  parse(args: Args): R;
  execute(req: R, ctx: Context, out: Output, session: Session): Outcome;
}
