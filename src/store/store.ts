import type { Database, RootDatabase } from 'lmdb';
import type { Logger } from 'pino';
import { StorageError } from '../errors.js';
import { TreeHasher } from '../merkle/hash.js';
import { MerkleTree } from '../merkle/tree.js';
import { openDatabases, type Databases } from './databases.js';
import { compareHlc, HybridClock, type Hlc, type Version } from './hlc.js';
import { KeyHashIndex } from './keyhash.js';
import { Overlay, PendingWrite } from './overlay.js';
import { TombstonePurger } from './purge.js';
import {
  compareWithRecord,
  encodeKeyedRecord,
  isTombstone,
  ITEM_OFFSET,
  keyedRecordOffset,
  recordKeyHash,
  recordKeyHashHi,
  recordValue,
  recordVersion,
} from './record.js';
import { replayLog } from './replay.js';
import { upgradeDataDirectory } from './upgrade.js';
import { WriteAheadLog, type FsyncMode } from './wal.js';

export type { StoredEntry } from './keyhash.js';

export interface StoreOptions {
  readonly path: string;
  readonly nodeId: string;
  readonly maxClockSkewMs: number;
  readonly tombstoneGraceSeconds: number;
  readonly logger: Logger;
  /** Keys the Merkle hashes; the same on every node of a cluster ('' for the built-in default). */
  readonly clusterSecret?: string;
  /** Segment bits of the Merkle tree (default 16). */
  readonly treeBits?: number;
  /** `[storage] fsync` (default "periodic") and `fsync_period_ms` (default 100). */
  readonly fsync?: FsyncMode;
  readonly fsyncPeriodMs?: number;
  /** The largest value a write may carry (bounds what start-up accepts from the log). */
  readonly maxValueBytes?: number;
}

/** What a reply must wait for before it may be sent: null for nothing (see DESIGN.md section 4). */
export type Ack = Promise<void> | null;

/** A value read, and what a reply showing it must wait for. */
export interface Read<T> {
  readonly value: T;
  readonly after: Ack;
}

/** A write this node acknowledged to its client, as replication publishes it. */
export interface AcknowledgedWrite {
  readonly key: Buffer;
  readonly version: Version;
  /** Empty for a tombstone. */
  readonly value: Buffer;
  readonly tombstone: boolean;
}

/**
 * The node's records: a write-ahead log (wal.ts) for durability, the pending overlay (overlay.ts) for
 * what the log holds and LMDB does not yet, and LMDB (one entry per key, the value an encoded record,
 * record.ts; tombstones included) behind them.
 *
 * A write is versioned, hashed into the Merkle tree, appended to the log's buffer and put in the
 * overlay at once, so every later read sees it. `flush()` writes the buffered entries to the log file
 * with one write: whoever acknowledges writes (a connection, after running a batch of requests; the
 * replicator, after applying a message) calls it before it answers. Then, per `[storage] fsync`:
 * "periodic" acknowledges at once (the OS holds the write), "always" after the fdatasync that a write
 * returns as its `Ack`. Acknowledged local writes are announced to `onAcknowledged` listeners.
 */
export class Store {
  readonly clock: HybridClock;
  /** Merkle tree over every record, tombstones and pending writes included (DESIGN.md section 6). */
  readonly tree: MerkleTree;
  readonly hasher: TreeHasher;
  /** Records by key-hash range: what anti-entropy compares and sends (keyhash.ts). */
  readonly keyHashes: KeyHashIndex;
  /** Remote writes refused because they may bring back a key whose tombstone was purged here. */
  refusedPurged = 0;

  private readonly log: WriteAheadLog;
  private readonly overlay: Overlay;
  private readonly purger: TombstonePurger;
  /** Writes appended since the last flush, oldest first (undone if the flush fails). */
  private unflushed: PendingWrite[] = [];
  /** Log position after the newest local write. */
  private lastLocalEnd = 0;
  private flushScheduled = false;
  private readonly listeners: ((writes: AcknowledgedWrite[]) => void)[] = [];
  private live = 0;
  private tombstones = 0;
  private closed = false;

  private readonly root: RootDatabase<Buffer, Buffer>;
  private readonly db: Database<Buffer, Buffer>;

  private constructor(
    dbs: Databases,
    private readonly opts: StoreOptions,
  ) {
    const { root, db, index } = dbs;
    this.root = root;
    this.db = db;
    const logger = opts.logger;
    this.clock = new HybridClock(opts.maxClockSkewMs, Date.now, (remote, limit) =>
      logger.warn({ remote, limit }, 'remote clock reading too far ahead; clamped'),
    );
    this.tree = new MerkleTree(opts.treeBits ?? 16);
    this.hasher = new TreeHasher(opts.clusterSecret ?? '');
    upgradeDataDirectory({ ...dbs, hasher: this.hasher, logger });
    const maxEntryBytes = 4096 + (opts.maxValueBytes ?? 64 * 1024 * 1024);
    const { nextSeq } = replayLog({ ...dbs, dir: opts.path, logger, maxEntryBytes });
    this.countRecords();
    this.log = new WriteAheadLog({
      dir: opts.path,
      mode: opts.fsync ?? 'periodic',
      periodMs: opts.fsyncPeriodMs ?? 100,
      logger,
      firstSeq: nextSeq,
    });
    this.overlay = new Overlay({ db, index, log: this.log, logger, flush: () => this.flush() });
    this.keyHashes = new KeyHashIndex(index, {
      readAt: (key, k) => this.readAt(key, k),
      unindexed: () => this.overlay.unindexedValues(),
      unindexedCount: () => this.overlay.unindexedCount,
      recordCount: () => this.live + this.tombstones,
    });
    this.purger = new TombstonePurger({
      ...dbs,
      logger,
      graceSeconds: opts.tombstoneGraceSeconds,
      isPending: (k) => this.overlay.get(k) !== undefined,
      onRemoved: (rec) => {
        this.tree.updateBytes(this.tree.segmentOf(recordKeyHashHi(rec)), rec, ITEM_OFFSET, -1);
        this.tombstones--;
      },
    });
    this.purger.start();
  }

  static open(opts: StoreOptions): Store {
    const dbs = openDatabases(opts.path);
    try {
      return new Store(dbs, opts);
    } catch (err) {
      void dbs.root.close();
      throw err;
    }
  }

  /** Live keys (tombstones excluded), pending writes included. */
  get size(): number {
    return this.live;
  }

  get tombstoneCount(): number {
    return this.tombstones;
  }

  /** STATS: the durability mode and how far the disk and LMDB are behind. */
  statsLines(): string[] {
    return [
      `storage_fsync:${this.log.mode}`,
      `storage_sync_lag_ms:${this.log.syncLagMs}`,
      `storage_syncs:${this.log.syncs}`,
      `storage_pending_writes:${this.overlay.size}`,
      `storage_pending_bytes:${this.overlay.pendingBytes}`,
      `storage_lmdb_lag_ms:${this.overlay.lagMs}`,
      `storage_lmdb_batches:${this.overlay.batchesApplied}`,
      `storage_lmdb_failures:${this.overlay.applyFailures}`,
    ];
  }

  /** What a reply that reflects every write so far (DBSIZE, SCAN, HASH) must wait for. */
  acknowledgedAfter(): Ack {
    return this.log.durableAfter(this.lastLocalEnd);
  }

  /**
   * The encoded record under `key`, tombstones included, pending writes first. LMDB's buffer is only
   * valid until the next read: copy what you keep. For replication and anti-entropy, which need no
   * durability wait: a peer holding a write that a power loss takes back here is a replica of it.
   */
  read(key: Buffer): Buffer | undefined {
    return this.overlay.size > 0 ? this.readAt(key, key.toString('latin1')) : this.readDurable(key);
  }

  private readAt(key: Buffer, k: string): Buffer | undefined {
    return this.overlay.get(k)?.rec ?? this.readDurable(key);
  }

  private readDurable(key: Buffer): Buffer | undefined {
    const shared = this.db.getBinaryFast(key);
    // getBinaryFast hands out lmdb's shared buffer with an overridden length: re-slice it into an
    // ordinary view, or Buffer.from/concat and open-ended subarray() read past the record.
    return shared?.subarray(0, shared.length);
  }

  /**
   * The live value under `key` (a view; copy what you keep; undefined for missing and deleted keys),
   * and what a reply showing it must wait for: with "always", a local write not yet on disk.
   */
  readValue(key: Buffer): Read<Buffer | undefined> {
    if (this.overlay.size > 0) {
      const p = this.overlay.get(key.toString('latin1'));
      if (p !== undefined) {
        // A write applied from another node is already durable where it was made, and the broker
        // redelivers it if we crash first: serving it need not wait for our disk.
        const after = p.local ? this.log.durableAfter(p.logEnd) : null;
        return { value: isTombstone(p.rec) ? undefined : recordValue(p.rec), after };
      }
    }
    // The hot path of GET: one slice of lmdb's shared buffer (whose length is overridden, see readDurable).
    const shared = this.db.getBinaryFast(key);
    return { value: shared === undefined || isTombstone(shared) ? undefined : recordValue(shared, shared.length), after: null };
  }

  /** Writes a value, versioned by this node's clock. */
  set(key: Buffer, value: Buffer): Ack {
    return this.write(key, value, false, this.clock.now(), this.opts.nodeId, true);
  }

  /** Writes a tombstone. */
  delete(key: Buffer): Ack {
    return this.write(key, EMPTY, true, this.clock.now(), this.opts.nodeId, true);
  }

  /**
   * Applies a write made elsewhere (replication, repair) if its version is newer than what is stored:
   * last writer wins on (hlc, node id) (DESIGN.md section 4). The same or an older version is a no-op,
   * so applying is idempotent and independent of arrival order. The remote clock reading is merged into
   * ours (and clamped if too far ahead). Returns the write's `Ack`, or undefined when it was not newer.
   */
  applyRemote(key: Buffer, version: Version, value: Buffer | undefined): Ack | undefined {
    if (this.closed) throw new StorageError('store is closed');
    const hlc = this.clock.observe(version);
    const incoming = { wall: hlc.wall, counter: hlc.counter, node: version.node };
    const k = key.toString('latin1');
    const current = this.readAt(key, k);
    if (current === undefined && hlc.wall < this.purger.purgedBefore) {
      // A key we do not hold, written before our purge horizon: it may be one whose delete we
      // have forgotten (its tombstone purged). Taking it would resurrect a deleted key.
      this.refusedPurged++;
      return undefined;
    }
    if (current !== undefined && compareWithRecord(incoming, current) <= 0) return undefined;
    return this.write(key, value ?? EMPTY, value === undefined, incoming, version.node, false, k, current);
  }

  /** Told of local writes once they are acknowledged (replication publishes them). */
  onAcknowledged(listener: (writes: AcknowledgedWrite[]) => void): void {
    this.listeners.push(listener);
  }

  private write(key: Buffer, value: Buffer, tombstone: boolean, hlc: Hlc, node: string, local: boolean, known?: string, knownRec?: Buffer): Ack {
    if (this.closed) throw new StorageError('store is closed');
    const k = known ?? key.toString('latin1');
    const prev = this.overlay.get(k);
    // The record replaced: a pending one (inside its keyed buffer, at an offset) or LMDB's.
    const before = prev !== undefined ? prev.body : known !== undefined ? knownRec : this.readDurable(key);
    const at = prev !== undefined ? prev.recOffset : 0;
    const wasLive = before !== undefined && !isTombstone(before, at);
    const wasTomb = before !== undefined && !wasLive;
    const item = this.hasher.item(key, { wall: hlc.wall, counter: hlc.counter, node }, tombstone, value);
    // A key's hash never changes: take it from the record being replaced when there is one.
    const keyHash = before === undefined ? this.hasher.keyHash(key) : recordKeyHash(before, at);
    // An explicit literal: a spread here cost more than the hashing (measured with --prof).
    const body = encodeKeyedRecord(key, { wall: hlc.wall, counter: hlc.counter, node, tombstone, value, item, keyHash });
    const recOffset = keyedRecordOffset(key.length);
    const segment = this.tree.segmentOf(keyHash.hi);
    this.tree.replaceBytes(segment, before, at + ITEM_OFFSET, body, recOffset + ITEM_OFFSET);
    const logEnd = this.log.append(body);
    const batch = this.overlay.currentBatch;
    const entry = new PendingWrite(
      k,
      body,
      recOffset,
      local,
      batch,
      // A rewrite within the batch takes over the index entry its predecessor would have written.
      prev === undefined ? before === undefined : prev.newKey && prev.batch === batch,
      logEnd,
      prev,
      (tombstone ? 0 : 1) - (wasLive ? 1 : 0),
      (tombstone ? 1 : 0) - (wasTomb ? 1 : 0),
      segment,
    );
    this.overlay.add(entry);
    this.unflushed.push(entry);
    this.live += entry.live;
    this.tombstones += entry.tombs;
    if (local) this.lastLocalEnd = logEnd;
    if (!this.flushScheduled) {
      // Whoever acknowledges flushes first; this catches writes nobody acknowledges (tests, repairs).
      // A tick, not an immediate: it costs no extra turn of the event loop (and no extra epoll call).
      this.flushScheduled = true;
      process.nextTick(() => {
        this.flushScheduled = false;
        if (this.closed) return;
        try {
          this.flush();
        } catch (err) {
          this.opts.logger.error({ err }, 'write-ahead log append failed');
        }
      });
    }
    const durable = this.log.durableAfter(logEnd);
    if (!this.overlay.overCap) return durable;
    // LMDB is far behind (a slow disk): the reply waits until it catches up, which slows the writers.
    const drained = this.overlay.drained();
    return durable === null ? drained : Promise.all([durable, drained]).then(() => undefined);
  }

  /**
   * Writes the log's buffered entries to its file (one write), then announces the local ones. Call it
   * before acknowledging writes. If the file cannot take them (disk full), the writes are undone here
   * and a StorageError is thrown: the caller answers them with errors.
   */
  flush(): void {
    if (this.unflushed.length === 0) return;
    const writes = this.unflushed;
    this.unflushed = [];
    try {
      this.log.flush();
    } catch (err) {
      this.undo(writes);
      throw err;
    }
    if (this.listeners.length === 0) return;
    const local = writes.filter((w) => w.local);
    if (local.length === 0) return;
    const durable = this.log.durableAfter(this.lastLocalEnd);
    if (durable === null) this.announce(local);
    else durable.then(() => this.announce(local), () => {});
  }

  private announce(writes: PendingWrite[]): void {
    const node = this.opts.nodeId; // local writes only: no need to read the node id back from the record
    const acked = writes.map((w) => {
      const rec = w.rec;
      const tombstone = isTombstone(rec);
      const { wall, counter } = recordVersion(rec);
      return { key: w.key, version: { wall, counter, node }, value: tombstone ? EMPTY : recordValue(rec), tombstone };
    });
    for (const listener of this.listeners) listener(acked);
  }

  /** Takes back writes whose log append failed, newest first. */
  private undo(writes: PendingWrite[]): void {
    for (let i = writes.length - 1; i >= 0; i--) {
      const e = writes[i] as PendingWrite;
      // What it replaced: its predecessor, or (once that is in LMDB, or if there was none) LMDB's record.
      const before = e.prev?.rec ?? this.readDurable(e.key);
      this.overlay.undo(e);
      this.live -= e.live;
      this.tombstones -= e.tombs;
      const item = e.recOffset + ITEM_OFFSET;
      if (before === undefined) this.tree.updateBytes(e.segment, e.body, item, -1);
      else this.tree.replaceBytes(e.segment, e.body, item, before, ITEM_OFFSET);
    }
  }

  /** The Merkle root (16 bytes), pending writes included. */
  rootHash(): Buffer {
    return this.tree.root();
  }

  /** Live keys starting with `prefix`, in byte order. */
  scan(prefix: Buffer): Buffer[] {
    const found = new Map<string, Buffer>();
    for (const { key, value } of this.db.getRange({ start: prefix })) {
      if (!startsWith(key, prefix)) break;
      if (!isTombstone(value)) found.set(key.toString('latin1'), Buffer.from(key));
    }
    for (const p of this.overlay.values()) {
      if (!startsWith(p.key, prefix)) continue;
      if (isTombstone(p.rec)) found.delete(p.k);
      else found.set(p.k, p.key);
    }
    return [...found.values()].sort((a, b) => Buffer.compare(a, b));
  }

  /** Deletes every live key (as tombstones, so the deletes replicate). */
  truncate(): Ack {
    let last: Ack = null;
    for (const key of this.scan(EMPTY)) last = this.delete(key) ?? last;
    return last;
  }

  /** Removes tombstones written before `olderThan` (ms since the epoch), pending ones too. Returns how many. */
  async purgeTombstones(olderThan: number): Promise<number> {
    await this.settled();
    return this.purger.purge(olderThan);
  }

  /** Resolves once every write so far is in LMDB, committed and synced. */
  async settled(): Promise<void> {
    this.flush();
    await this.overlay.settle();
  }

  /** Applies what is pending to LMDB, syncs, deletes the log and closes. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.purger.stop();
    this.overlay.stop();
    try {
      this.flush();
    } catch (err) {
      this.opts.logger.error({ err }, 'write-ahead log append failed at close');
    }
    this.closed = true;
    await this.overlay.settle();
    await this.log.close(true);
    await this.root.close();
  }

  /**
   * Counts live keys and tombstones, builds the Merkle tree from the stored item hashes (one cursor
   * scan, no value rehashed), and moves the clock past the newest stored version, so a node
   * whose wall clock went back while it was down still versions new writes after its old ones.
   */
  private countRecords(): void {
    let newest: Hlc = { wall: 0, counter: 0 };
    for (const { value } of this.db.getRange({})) {
      if (isTombstone(value)) this.tombstones++;
      else this.live++;
      this.tree.updateBytes(this.tree.segmentOf(recordKeyHashHi(value)), value, ITEM_OFFSET, 1);
      const v = recordVersion(value);
      if (compareHlc(v, newest) > 0) newest = v;
    }
    this.clock.observe(newest);
  }
}

const EMPTY = Buffer.alloc(0);

function startsWith(key: Buffer, prefix: Buffer): boolean {
  return key.length >= prefix.length && key.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
}
