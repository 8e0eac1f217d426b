import type { ConnectionOptions } from 'node:tls';
import type { Logger } from 'pino';
import { SelfPeerError, SyncError } from '../errors.js';
import { expected } from '../expected.js';
import { parsePeer, type Limits } from '../rules.js';
import type { Store } from '../store/index.js';
import { exchange, type ExchangeResult } from './exchange.js';
import { provePeer, type PeerProof } from './handshake.js';
import { PeerClient } from './peer.js';
import type { NodeStatus, Presence } from '../replication/presence.js';

export interface AntiEntropyOptions {
  readonly store: Store;
  readonly nodeId: string;
  readonly limits: Limits;
  /** Proves this node to each peer and checks the peer's proof before an exchange. */
  readonly proof: PeerProof;
  /** Run exchanges on a timer (`[anti_entropy] enabled`); SYNC works either way. */
  readonly enabled: boolean;
  /** `host:port` of each peer's client port. */
  readonly peers: readonly string[];
  readonly intervalMs: number;
  readonly maxConcurrent: number;
  readonly logger: Logger;
  /** Peers' client ports serve TLS (this node's does): how to connect to them. */
  readonly tls?: ConnectionOptions | undefined;
  /** Connect and per-reply timeout. */
  readonly timeoutMs?: number;
  /** The other nodes' presence (replication/presence.ts): offline peers are skipped, returning ones synced at once. */
  readonly presence?: Presence;
  /** Whether this node hears the broker now: only then does an offline status count. */
  readonly brokerConnected?: () => boolean;
}

interface PeerState {
  readonly address: string;
  readonly host: string;
  readonly port: number;
  /** When the next periodic exchange is due (ms since the epoch). */
  due: number;
  running: boolean;
  failures: number;
  lastSyncAt: number;
  /** The address turned out to be this node: never contacted again. */
  self: boolean;
  /** The peer's node id, once an exchange or its status has told it. */
  node: string | undefined;
  /** Periodic exchanges skipped because the broker reported the peer offline. */
  skippedOffline: number;
}

/** What exchanges with one peer came to (metrics). */
export interface PeerTotals {
  syncs: number;
  failures: number;
  keysSent: number;
  keysReceived: number;
  bytesSent: number;
  bytesReceived: number;
  /** Seconds spent in exchanges, failed ones included. */
  seconds: number;
}

/** Peers tracked one by one; SYNC with further addresses counts under OTHER_PEERS. */
const MAX_TRACKED_PEERS = 64;
const OTHER_PEERS = 'other';

const MAX_BACKOFF_FACTOR = 10;
/** Exchanges that may run at once beyond `max_concurrent_syncs` (for SYNC). */
const EXTRA_EXCHANGES = 8;

/**
 * Runs anti-entropy exchanges: every `intervalMs` (with ±20% jitter) with each peer of the list, at
 * most `maxConcurrent` at once, and on demand (SYNC). A peer that cannot be reached is logged once and
 * retried with backoff: after k failures in a row, after min(2^(k-1), 10) intervals.
 */
export class AntiEntropy {
  syncs = 0;
  syncsFailed = 0;
  keysSent = 0;
  keysReceived = 0;
  bytesSent = 0;
  bytesReceived = 0;
  roundTrips = 0;
  private readonly peers: PeerState[];
  private readonly totals = new Map<string, PeerTotals>();
  private readonly clients = new Set<PeerClient>();
  private timer: NodeJS.Timeout | undefined;
  private running = 0;
  /** Exchanges in progress, periodic and SYNC. */
  private active = 0;
  private stopped = false;

  constructor(private readonly opts: AntiEntropyOptions) {
    this.peers = opts.peers.map((address) => {
      const { host, port } = parsePeer(address);
      return { address, host, port, due: 0, running: false, failures: 0, lastSyncAt: 0, self: false, node: undefined, skippedOffline: 0 };
    });
    opts.presence?.onChange((now, before) => {
      if (now.state === 'online' && before?.state !== 'online') this.returned(now);
    });
  }

  /** A peer the broker reports online again (or for the first time): its exchange is due now. */
  private returned(status: NodeStatus): void {
    if (!this.opts.enabled || this.stopped) return;
    let woke = false;
    for (const p of this.peers) {
      if (p.self || (p.node !== status.node && p.address !== status.address)) continue;
      p.node ??= status.node;
      p.failures = 0;
      p.due = Date.now();
      woke = true;
    }
    if (!woke) return;
    this.opts.logger.info({ node: status.node, address: status.address }, 'anti-entropy: peer back online; syncing now');
    this.schedule();
  }

  /** What the broker says of the peer: its status, found by node id or else by address. */
  private statusOf(p: PeerState): NodeStatus | undefined {
    const presence = this.opts.presence;
    if (presence === undefined) return undefined;
    const status = p.node !== undefined ? presence.get(p.node) : presence.byAddress(p.address);
    if (status !== undefined) p.node ??= status.node;
    return status;
  }

  start(): void {
    if (!this.opts.enabled || this.peers.length === 0) return;
    // A node that just started may have missed writes: its first exchanges come soon, spread out.
    const first = Math.min(this.opts.intervalMs, 5000);
    for (const p of this.peers) p.due = Date.now() + 500 + Math.random() * first;
    this.schedule();
  }

  /** Stops the timer and ends exchanges in progress (their SYNC callers get an error). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const c of this.clients) c.close();
  }

  /**
   * One exchange with `host:port` now; `full` walks the whole tree, equal hashes or not (SYNC --full).
   * Rejects with a ProtocolError saying why it failed.
   */
  async syncWith(host: string, port: number, full = false): Promise<ExchangeResult> {
    const where = `${host}:${port}`;
    // Clients can ask for exchanges (SYNC) on many connections at once: each holds a connection and
    // its replies in memory, so their number is bounded.
    if (this.active >= this.opts.maxConcurrent + EXTRA_EXCHANGES) {
      this.syncsFailed++;
      throw new SyncError(`sync with ${where} failed: ${this.active} exchanges in progress already`, false);
    }
    this.active++;
    const started = Date.now();
    let client: PeerClient | undefined;
    /** Set once the exchange succeeded or failed (not for this node itself). */
    let totals: PeerTotals | undefined;
    try {
      client = await PeerClient.open(host, port, this.opts.timeoutMs ?? 30_000, this.opts.tls);
      this.clients.add(client);
      const { accepted } = await provePeer(client, this.opts.proof);
      // Awaited below, unless the proof was refused: then its failure is expected, not unhandled (which
      // ended the process when a peer with a full disk answered the proof with an ERROR).
      const exchanged = expected(exchange(this.opts.store, client, this.opts.nodeId, this.opts.limits, full));
      // The proof's answer comes first: if it was refused, say so rather than what followed from it.
      await accepted;
      const result = await exchanged;
      this.syncs++;
      this.roundTrips += result.roundTrips;
      this.keysSent += result.keysSent;
      this.keysReceived += result.keysReceived;
      totals = this.totalsOf(where);
      totals.syncs++;
      totals.keysSent += result.keysSent;
      totals.keysReceived += result.keysReceived;
      const fields = { address: where, ...result, bytesSent: client.bytesSent, bytesReceived: client.bytesReceived, ms: Date.now() - started };
      if (result.equal) this.opts.logger.debug(fields, 'anti-entropy: replicas equal');
      else this.opts.logger.info(fields, 'anti-entropy: exchange done');
      return result;
    } catch (err) {
      const self = err instanceof SelfPeerError;
      if (!self) {
        this.syncsFailed++;
        totals = this.totalsOf(where);
        totals.failures++;
      }
      const why = (err instanceof Error ? err.message : String(err)).replace(/[\r\n]+/g, ' ');
      throw new SyncError(`sync with ${where} failed: ${why}`, self, { cause: err });
    } finally {
      this.active--;
      if (totals !== undefined) totals.seconds += (Date.now() - started) / 1000;
      if (client !== undefined) {
        this.bytesSent += client.bytesSent;
        this.bytesReceived += client.bytesReceived;
        if (totals !== undefined) {
          totals.bytesSent += client.bytesSent;
          totals.bytesReceived += client.bytesReceived;
        }
        client.close();
        this.clients.delete(client);
      }
    }
  }

  /** Per peer (`host:port`, or 'other' beyond MAX_TRACKED_PEERS): what its exchanges came to. */
  peerTotals(): ReadonlyMap<string, Readonly<PeerTotals>> {
    return this.totals;
  }

  private totalsOf(where: string): PeerTotals {
    let t = this.totals.get(where) ?? (this.totals.size < MAX_TRACKED_PEERS ? undefined : this.totals.get(OTHER_PEERS));
    if (t === undefined) {
      t = { syncs: 0, failures: 0, keysSent: 0, keysReceived: 0, bytesSent: 0, bytesReceived: 0, seconds: 0 };
      this.totals.set(this.totals.size < MAX_TRACKED_PEERS ? where : OTHER_PEERS, t);
    }
    return t;
  }

  statsLines(): string[] {
    const lines = [
      `anti_entropy_enabled:${this.opts.enabled ? 1 : 0}`,
      `anti_entropy_syncs:${this.syncs}`,
      `anti_entropy_syncs_failed:${this.syncsFailed}`,
      `anti_entropy_round_trips:${this.roundTrips}`,
      `anti_entropy_keys_sent:${this.keysSent}`,
      `anti_entropy_keys_received:${this.keysReceived}`,
      `anti_entropy_bytes_sent:${this.bytesSent}`,
      `anti_entropy_bytes_received:${this.bytesReceived}`,
      `anti_entropy_refused_purged:${this.opts.store.refusedPurged}`,
    ];
    for (const p of this.peers) {
      // When the last exchange with this peer succeeded (ms since the epoch; 0: never).
      if (!p.self) lines.push(`anti_entropy_peer_${p.address.replace(/[^A-Za-z0-9.-]/g, '_')}_last_sync:${p.lastSyncAt}`);
    }
    return lines;
  }

  /**
   * `STATS peers`: each peer of the list, then each other node the broker reports, as
   * `peer<i>:node=<id>,address=<host:port>,state=<online|offline|unknown>,version=<v>,last_sync=<ms>,skipped_offline=<n>`.
   */
  peerLines(): string[] {
    const lines: string[] = [];
    const listed = new Set<string>();
    for (const p of this.peers) {
      if (p.self) continue;
      const s = this.statusOf(p);
      if (p.node !== undefined) listed.add(p.node);
      lines.push(peerLine(lines.length, { node: p.node ?? '', address: p.address, state: s?.state ?? 'unknown', version: s?.version ?? '', lastSync: p.lastSyncAt, skipped: p.skippedOffline }));
    }
    for (const s of this.opts.presence?.all() ?? []) {
      if (listed.has(s.node)) continue;
      lines.push(peerLine(lines.length, { node: s.node, address: s.address, state: s.state, version: s.version, lastSync: 0, skipped: 0 }));
    }
    return lines;
  }

  private schedule(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const waiting = this.peers.filter((p) => !p.running && !p.self);
    if (waiting.length === 0) return;
    const next = Math.min(...waiting.map((p) => p.due));
    this.timer = setTimeout(() => this.runDue(), Math.max(0, next - Date.now()));
    this.timer.unref();
  }

  private runDue(): void {
    const now = Date.now();
    for (const p of this.peers) {
      if (this.running >= this.opts.maxConcurrent) break;
      if (p.running || p.self || p.due > now) continue;
      if (this.statusOf(p)?.state === 'offline' && this.opts.brokerConnected?.() === true) {
        // Not worth a connect timeout: the broker says it is down, and says so again when it is back.
        // (Only while this node hears the broker: cut off from it, this node cannot know.)
        p.skippedOffline++;
        p.due = now + this.opts.intervalMs;
        continue;
      }
      this.running++;
      p.running = true;
      void this.runPeer(p).finally(() => {
        this.running--;
        p.running = false;
        this.schedule();
      });
    }
    // Peers left waiting for a free slot are due already: look again when one frees up.
    this.schedule();
  }

  private async runPeer(p: PeerState): Promise<void> {
    const interval = this.opts.intervalMs;
    try {
      const result = await this.syncWith(p.host, p.port);
      p.node = result.peer;
      if (p.failures > 0) this.opts.logger.info({ peer: p.address }, 'anti-entropy: peer reachable again');
      p.failures = 0;
      p.lastSyncAt = Date.now();
      p.due = Date.now() + interval * (0.8 + Math.random() * 0.4);
    } catch (err) {
      if (err instanceof SyncError && err.self) {
        p.self = true;
        this.opts.logger.debug({ peer: p.address }, 'anti-entropy: peer address is this node; skipped');
        return;
      }
      p.failures++;
      const factor = Math.min(2 ** (p.failures - 1), MAX_BACKOFF_FACTOR);
      p.due = Date.now() + interval * factor;
      const fields = { peer: p.address, failures: p.failures, retryInMs: interval * factor, why: (err as Error).message };
      if (p.failures === 1) this.opts.logger.warn(fields, 'anti-entropy: peer skipped');
      else this.opts.logger.debug(fields, 'anti-entropy: peer still unreachable');
    }
  }
}

function peerLine(i: number, p: { node: string; address: string; state: string; version: string; lastSync: number; skipped: number }): string {
  return `peer${i}:node=${p.node},address=${p.address},state=${p.state},version=${p.version},last_sync=${p.lastSync},skipped_offline=${p.skipped}`;
}
