import { SelfPeerError, SyncError } from '../errors.js';
import { expected } from '../expected.js';
import { exchange, type ExchangeResult } from './exchange.js';
import { provePeer } from './handshake.js';
import { CopyCursors } from './cursors.js';
import { StreamWatch } from './progress.js';
import { PeerClient } from './peer.js';
import type { NodeStatus } from '../replication/presence.js';
import { chooseInTurn, PeerSet, type PeerState } from './rotation.js';
import { PeerTotalsTable, type PeerTotals } from './totals.js';
import type { AntiEntropyOptions, AntiEntropySettings } from './options.js';

export type { AntiEntropyOptions, AntiEntropySettings } from './options.js';
export type { PeerTotals };

const MAX_BACKOFF_FACTOR = 10;
/** While a node has not yet caught up, a peer it finds brings its next round this close (ms). */
const CATCH_UP_DELAY_MS = 200;
/** Exchanges that may run at once beyond `max_concurrent_syncs` (for SYNC). */
const EXTRA_EXCHANGES = 8;

/**
 * Runs anti-entropy exchanges: every `intervalMs` (with ±20% jitter) a round with up to `maxConcurrent`
 * peers taken in turn (rotation.ts), at most `maxConcurrent` at once; at once with a peer that comes back
 * online; and on demand (SYNC). The peers are those listed and, with `discover`, the nodes `presence`
 * reports. A peer that cannot be reached is logged once and retried with backoff: after k failures in a
 * row, after about min(2^(k-1), 10) intervals.
 */
export class AntiEntropy {
  syncs = 0;
  syncsFailed = 0;
  keysSent = 0;
  keysReceived = 0;
  bytesSent = 0;
  bytesReceived = 0;
  roundTrips = 0;
  private readonly peers: PeerSet;
  private readonly totals = new PeerTotalsTable();
  /** What a config reload may change (configure()). */
  private settings: AntiEntropySettings;
  /** Re-reads the peers every `discoveryIntervalMs`. */
  private discovery: NodeJS.Timeout | undefined;
  private readonly clients = new Set<PeerClient>();
  /** Where a copy of a peer's whole store (by its node id) was cut short: resumed by the next exchange. */
  private readonly copies: CopyCursors;
  /** Streams filling this node from its peers: progress for the log, STATS and metrics. */
  readonly streams: StreamWatch;
  private timer: NodeJS.Timeout | undefined;
  private running = 0;
  /** Exchanges in progress, periodic and SYNC. */
  private active = 0;
  private stopped = false;
  /** start() was called: rounds run. */
  private started = false;
  /** When the next round takes its peers in turn (ms since the epoch). */
  private roundAt = Infinity;
  /** Turns given out so far: a peer's `turn` is this count at its last exchange (or when it was found). */
  private turns = 0;
  /** Rounds run since start. */
  private rounds = 0;
  /** An exchange from the timer has succeeded since start; until then a peer found after the first round brings the next. */
  private caughtUp = false;

  constructor(private readonly opts: AntiEntropyOptions) {
    this.streams = new StreamWatch(opts.logger);
    this.copies = new CopyCursors(opts.store.path, opts.logger);
    this.settings = opts;
    this.peers = new PeerSet(opts.peers);
    opts.presence?.onChange((now, before) => this.heard(now, before));
    opts.presence?.onForget((node) => this.peers.forget(node));
  }

  /**
   * A node's status changed: with discovery it is a peer (moved, or found now if this node has not caught
   * up yet; otherwise at the next refresh); coming online, it may be due now.
   */
  private heard(now: NodeStatus, before: NodeStatus | undefined): void {
    const atOnce = this.settings.discoveryIntervalMs === undefined || !this.caughtUp || this.peers.find(now) !== undefined;
    const tracked = this.settings.discover === true && atOnce ? this.peers.track(now) : undefined;
    const p = tracked?.peer ?? this.peers.find(now);
    if (p === undefined) return;
    if (tracked?.added === true) this.joined([tracked.peer]);
    if (now.state === 'online' && before?.state !== 'online') this.returned(p, now, before);
  }

  /**
   * New peers: a node that joins a running cluster catches up by itself, so the others take it at the back
   * of their turns, not all at once. One that has not caught up yet wants it first, and its next round now.
   */
  private joined(added: readonly PeerState[]): void {
    if (added.length === 0) return;
    for (const p of added) if (this.caughtUp) p.turn = ++this.turns;
    if (!this.caughtUp && this.rounds > 0) this.roundAt = Math.min(this.roundAt, Date.now() + CATCH_UP_DELAY_MS);
    this.schedule();
  }

  /** Re-reads who the peers are (every `discoveryIntervalMs`, and on configure()). */
  refreshPeers(): void {
    const { peers, discover } = this.settings;
    const added = this.peers.refresh(peers, discover === true ? (this.opts.presence?.all() ?? []) : undefined);
    if (added.length > 0) this.opts.logger.info({ peers: added.map((p) => p.address) }, 'anti-entropy: new peers');
    this.joined(added);
  }

  /** Takes new settings (a config reload): the peers are re-read at once, a shorter interval brings the next round nearer. */
  configure(next: AntiEntropySettings): void {
    const before = this.settings;
    this.settings = next;
    if (this.started && next.intervalMs < before.intervalMs) this.roundAt = Math.min(this.roundAt, Date.now() + next.intervalMs);
    if (next.discoveryIntervalMs !== before.discoveryIntervalMs) this.watchPeers();
    this.refreshPeers();
    this.schedule();
  }

  /** (Re)arms the refresh of the peers. */
  private watchPeers(): void {
    clearInterval(this.discovery);
    const every = this.settings.discoveryIntervalMs;
    if (!this.started || this.stopped || every === undefined) return;
    this.discovery = setInterval(() => this.refreshPeers(), every);
    this.discovery.unref();
  }

  /**
   * A peer the broker reports online again (or, a listed one, for the first time): its exchange is due
   * now. A node merely found (online when first heard of) waits for its turn: it catches up by itself.
   */
  private returned(p: PeerState, status: NodeStatus, before: NodeStatus | undefined): void {
    if (!this.opts.enabled || this.stopped || p.self) return;
    if (before === undefined && !p.listed) return;
    p.node ??= status.node;
    p.failures = 0;
    p.retryAt = 0;
    p.soon = Date.now();
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

  /** Whether the broker reports the peer offline, and this node hears the broker (cut off from it, it cannot know). */
  private reportedOffline(p: PeerState): boolean {
    return this.statusOf(p)?.state === 'offline' && this.opts.brokerConnected?.() === true;
  }

  start(): void {
    if (!this.opts.enabled) return;
    this.started = true;
    // A node that just started may have missed writes: its first round comes soon (spread out over the
    // cluster); until one exchange has succeeded, a peer found on the broker later brings the next nearer.
    this.roundAt = Date.now() + 500 + Math.random() * Math.min(this.settings.intervalMs, 5000);
    this.watchPeers();
    this.schedule();
  }

  /** Stops the timer and ends exchanges in progress (their SYNC callers get an error). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.discovery);
    for (const c of this.clients) c.close();
  }

  /**
   * One exchange with `host:port` now; `full` first copies every record the peer holds (SYNC --full).
   * Rejects with a ProtocolError saying why it failed.
   */
  async syncWith(host: string, port: number, full = false): Promise<ExchangeResult> {
    const where = `${host}:${port}`;
    // Clients can ask for exchanges (SYNC) on many connections at once: each holds a connection and
    // its replies in memory, so their number is bounded.
    if (this.active >= this.settings.maxConcurrent + EXTRA_EXCHANGES) {
      this.syncsFailed++;
      throw new SyncError(`sync with ${where} failed: ${this.active} exchanges in progress already`, false);
    }
    this.active++;
    const started = Date.now();
    let client: PeerClient | undefined;
    /** Set once the exchange succeeded or failed (not for this node itself). */
    let totals: PeerTotals | undefined;
    let watch: ReturnType<StreamWatch['begin']> | undefined;
    try {
      client = await PeerClient.open(host, port, this.opts.timeoutMs ?? 30_000, this.settings.tls);
      this.clients.add(client);
      const { accepted } = await provePeer(client, this.opts.proof);
      // Awaited below, unless the proof was refused: then its failure is expected, not unhandled (which
      // ended the process when a peer with a full disk answered the proof with an ERROR).
      watch = this.streams.begin(where);
      const exchanged = expected(
        exchange(this.opts.store, client, { nodeId: this.opts.nodeId, limits: this.opts.limits, full, onStream: watch.onFrame, copies: this.copies }),
      );
      // The proof's answer comes first: if it was refused, say so rather than what followed from it.
      await accepted;
      const result = await exchanged;
      this.syncs++;
      this.roundTrips += result.roundTrips;
      this.keysSent += result.keysSent;
      this.keysReceived += result.keysReceived;
      totals = this.totals.of(where);
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
        totals = this.totals.of(where);
        totals.failures++;
      }
      const why = (err instanceof Error ? err.message : String(err)).replace(/[\r\n]+/g, ' ');
      throw new SyncError(`sync with ${where} failed: ${why}`, self, { cause: err });
    } finally {
      this.active--;
      watch?.end();
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
    return this.totals.all;
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
      // The cluster's segment bits, and those of the deepest level this node's tree keeps (merkle/tree.ts).
      `anti_entropy_segment_bits:${this.opts.store.merkle.bits}`,
      `anti_entropy_tree_leaf_bits:${this.opts.store.merkle.leafBits}`,
      ...this.streams.statsLines(),
    ];
    for (const p of this.peers.all) {
      // When the last exchange with this peer succeeded (ms since the epoch; 0: never).
      if (!p.self) lines.push(`anti_entropy_peer_${p.address.replace(/[^A-Za-z0-9.-]/g, '_')}_last_sync:${p.lastSyncAt}`);
    }
    return lines;
  }

  /**
   * `STATS peers`: each peer (listed, then found on the broker), then each other node the broker reports, as
   * `peer<i>:node=<id>,address=<host:port>,state=<online|offline|unknown>,version=<v>,last_sync=<ms>,skipped_offline=<n>`.
   */
  peerLines(): string[] {
    const lines: string[] = [];
    const listed = new Set<string>();
    for (const p of this.peers.all) {
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
    if (this.stopped || !this.started) return;
    clearTimeout(this.timer);
    // All slots busy: the exchange that ends first calls again.
    if (this.running >= this.settings.maxConcurrent) return;
    let next = Infinity;
    let idle = false;
    for (const p of this.peers.all) {
      if (p.running || p.self) continue;
      idle = true;
      if (p.soon > 0) next = Math.min(next, p.soon);
    }
    if (!idle) return;
    next = Math.min(next, this.roundAt);
    this.timer = setTimeout(() => this.runDue(), Math.max(0, next - Date.now()));
    this.timer.unref();
  }

  private runDue(): void {
    const now = Date.now();
    const max = this.settings.maxConcurrent;
    // Peers back online first, as soon as a slot is free.
    for (const p of this.peers.all) {
      if (this.running >= max) break;
      if (p.soon === 0 || p.soon > now || p.running || p.self) continue;
      p.soon = 0;
      if (this.reportedOffline(p)) p.skippedOffline++;
      else this.launch(p);
    }
    // The round: up to `max` peers in turn (fewer while exchanges still run; none until a slot is free).
    if (this.roundAt <= now && this.running < max) {
      this.roundAt = now + this.settings.intervalMs * (0.8 + Math.random() * 0.4);
      this.rounds++;
      const chosen = chooseInTurn(this.peers.all, max - this.running, (p) => {
        if (p.running || p.self || p.retryAt > now) return false;
        if (!this.reportedOffline(p)) return true;
        // Not worth a connect timeout: the broker says it is down, and says so again when it is back.
        p.skippedOffline++;
        return false;
      });
      for (const p of chosen) this.launch(p);
    }
    this.schedule();
  }

  private launch(p: PeerState): void {
    this.running++;
    p.running = true;
    p.turn = ++this.turns;
    void this.runPeer(p).finally(() => {
      this.running--;
      p.running = false;
      this.schedule();
    });
  }

  private async runPeer(p: PeerState): Promise<void> {
    const interval = this.settings.intervalMs;
    try {
      const result = await this.syncWith(p.host, p.port);
      if (p.listed) {
        p.node = result.peer;
        this.peers.merge(p);
      }
      if (p.failures > 0) this.opts.logger.info({ peer: p.address }, 'anti-entropy: peer reachable again');
      p.failures = 0;
      p.retryAt = 0;
      p.lastSyncAt = Date.now();
      this.caughtUp = true;
    } catch (err) {
      if (err instanceof SyncError && err.self) {
        p.self = true;
        this.opts.logger.debug({ peer: p.address }, 'anti-entropy: peer address is this node; skipped');
        return;
      }
      p.failures++;
      const factor = Math.min(2 ** (p.failures - 1), MAX_BACKOFF_FACTOR);
      // Half an interval early: rounds come every 0.8-1.2 intervals, and the one after `factor` of them should take it.
      p.retryAt = Date.now() + interval * (factor - 0.5);
      const fields = { peer: p.address, failures: p.failures, retryInMs: interval * factor, why: (err as Error).message };
      if (p.failures === 1) this.opts.logger.warn(fields, 'anti-entropy: peer skipped');
      else this.opts.logger.debug(fields, 'anti-entropy: peer still unreachable');
    }
  }
}

function peerLine(i: number, p: { node: string; address: string; state: string; version: string; lastSync: number; skipped: number }): string {
  return `peer${i}:node=${p.node},address=${p.address},state=${p.state},version=${p.version},last_sync=${p.lastSync},skipped_offline=${p.skipped}`;
}
