import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { Database, RootDatabase } from 'lmdb';
import type { Logger } from 'pino';
import { StorageError } from '../errors.js';
import { lockDataDirectory } from './lock.js';
import { TreeHasher } from '../merkle/hash.js';
import { MerkleTree } from '../merkle/tree.js';
import { openDatabases, type Databases } from './databases.js';
import { counterValue, decodeCounter } from './counter.js';
import { compareHlc, HybridClock, type Hlc } from './hlc.js';
import { KeyHashIndex } from './keyhash.js';
import { Overlay, PendingWrite } from './overlay.js';
import { TombstonePurger } from './purge.js';
import { RecordCounts } from './counts.js';
import {
  encodeKeyedRecord,
  FLAG_TOMBSTONE,
  isAbsent,
  isSimple,
  isTombstone,
  ITEM_OFFSET,
  KIND,
  kindFlags,
  keyedRecordOffset,
  recordKeyHash,
  recordKeyHashHi,
  recordEpochId,
  recordKind,
  recordValue,
  recordVersion,
} from './record.js';
import { replayLog } from './replay.js';
import { checkKeyKind, isMemberKey, setKeyOf } from './members.js';
import { isDead, isSetHeader, SetIndex } from './sets.js';
import { encodeState, isSimpleState, mergeInto, newestWall, type RecordState } from './state.js';
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

/** What a key holds, as GET sees it: a value (a counter's in decimal), a set, or nothing. */
export type Held = Buffer | 'set' | undefined;

/** See Store.storageFigures. */
export interface StorageFigures {
  readonly fsync: FsyncMode;
  readonly syncLagMs: number;
  readonly syncs: number;
  readonly pendingWrites: number;
  readonly pendingBytes: number;
  readonly lmdbLagMs: number;
  readonly lmdbBatches: number;
  readonly lmdbFailures: number;
}

/** A write this node acknowledged to its client, as replication publishes it. */
export interface AcknowledgedWrite {
  readonly key: Buffer;
  /** The record written (record.ts; a view of the pending write, which never changes). */
  readonly rec: Buffer;
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
  /** Acknowledgers waiting for the next flush (`flushed()`), told its outcome. */
  private flushWaiters: ((err: Error | undefined) => void)[] = [];
  private readonly listeners: ((writes: AcknowledgedWrite[]) => void)[] = [];
  private readonly counts: RecordCounts;
  private readonly sets: SetIndex;
  private closed = false;
  /** Releases the data directory's lock (lock.ts), once LMDB is closed. */
  private unlock: () => void = () => {};

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
    this.sets = new SetIndex({
      ...dbs,
      logger,
      readAt: (key, k) => this.readAt(key, k),
      isPending: (k) => this.overlay.get(k) !== undefined,
      pending: () => this.overlay.values(),
      onRemoved: (k, rec) => this.forgotten(k, rec),
    });
    this.counts = new RecordCounts((k, rec, o) => this.sets.card(k, rec, o) === 0);
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
      recordCount: () => this.counts.total,
    });
    this.purger = new TombstonePurger({
      ...dbs,
      logger,
      graceSeconds: opts.tombstoneGraceSeconds,
      isPending: (k) => this.overlay.get(k) !== undefined,
      headerOf: (k) => this.headerOf(k),
      onRemoved: (k, rec) => this.forgotten(k, rec),
    });
    this.purger.start();
  }

  /** Opens the store in `opts.path`; refused (StorageError) if another running node holds that directory. */
  static open(opts: StoreOptions): Store {
    const unlock = lockDataDirectory(opts.path);
    let dbs: Databases | undefined;
    try {
      dbs = openDatabases(opts.path);
      const store = new Store(dbs, opts);
      store.unlock = unlock;
      return store;
    } catch (err) {
      if (dbs === undefined) unlock();
      else void dbs.root.close().finally(unlock);
      throw err;
    }
  }

  /** This node's id: the version of its writes names it. */
  get nodeId(): string {
    return this.opts.nodeId;
  }

  /** A record removed from LMDB (purged, or a member of an old set epoch): out of the tree and the counts. */
  private forgotten(k: string, rec: Buffer): void {
    this.tree.updateBytes(this.tree.segmentOf(recordKeyHashHi(rec)), rec, ITEM_OFFSET, -1);
    this.account(k, rec, 0, -1);
  }

  /**
   * Adds (`sign` 1) or takes back (-1) the record at `o` of `rec` (key `k`, latin1) in the counts. A
   * member record counts towards its set's cardinality; when that crosses 0, the set's header (which
   * counts as a tombstone while the set is empty) is counted again.
   */
  private account(k: string, rec: Buffer, o: number, sign: 1 | -1): void {
    if (recordKind(rec, o) !== KIND.member) {
      this.counts.count(k, rec, o, sign);
      return;
    }
    const setK = this.sets.crossing(k, rec, o, sign);
    const header = setK === undefined ? undefined : this.headerOf(k);
    const recount = header !== undefined && isSetHeader(header) && recordEpochId(header) === recordEpochId(rec, o);
    // Taken back under the cardinality it was counted with, added again under the new one.
    if (recount) this.counts.count(setK as string, header, 0, -1);
    this.sets.count(k, rec, o, sign);
    if (recount) this.counts.count(setK as string, header, 0, 1);
  }

  /** The record of the set that the member key `k` (latin1) belongs to. */
  private headerOf(k: string): Buffer | undefined {
    const setK = setKeyOf(k);
    return this.readAt(Buffer.from(setK, 'latin1'), setK);
  }

  /** Live keys (tombstones and expired keys excluded), pending writes included. */
  get size(): number {
    return this.counts.live;
  }

  /** Tombstones and expired records not purged yet. */
  get tombstoneCount(): number {
    return this.counts.tombstones;
  }

  /** Live keys that will expire. */
  get expiringCount(): number {
    return this.counts.expiringCount;
  }

  /** STATS: the durability mode and how far the disk and LMDB are behind. */
  /** The write path's state, for STATS and metrics. */
  storageFigures(): StorageFigures {
    return {
      fsync: this.log.mode,
      syncLagMs: this.log.syncLagMs,
      syncs: this.log.syncs,
      pendingWrites: this.overlay.size,
      pendingBytes: this.overlay.pendingBytes,
      lmdbLagMs: this.overlay.lagMs,
      lmdbBatches: this.overlay.batchesApplied,
      lmdbFailures: this.overlay.applyFailures,
    };
  }

  statsLines(): string[] {
    const f = this.storageFigures();
    return [
      `storage_fsync:${f.fsync}`,
      `storage_sync_lag_ms:${f.syncLagMs}`,
      `storage_syncs:${f.syncs}`,
      `storage_pending_writes:${f.pendingWrites}`,
      `storage_pending_bytes:${f.pendingBytes}`,
      `storage_lmdb_lag_ms:${f.lmdbLagMs}`,
      `storage_lmdb_batches:${f.lmdbBatches}`,
      `storage_lmdb_failures:${f.lmdbFailures}`,
    ];
  }

  /** The data directory. */
  get path(): string {
    return this.opts.path;
  }

  /** The size of LMDB's data file (0 if it cannot be read). */
  lmdbBytes(): number {
    try {
      return statSync(join(this.opts.path, 'data.mdb')).size;
    } catch {
      return 0;
    }
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
   * The record under `key` that a reply may show (a view; copy what you keep; tombstones and expired
   * records included), and what the reply must wait for: with "always", a local write not yet on disk.
   */
  readRecord(key: Buffer): Read<Buffer | undefined> {
    return this.readPending(key) ?? { value: this.readDurable(key), after: null };
  }

  /** The pending write of `key`, if there is one, and what a reply showing it must wait for. */
  private readPending(key: Buffer): Read<Buffer> | undefined {
    if (this.overlay.size === 0) return undefined;
    const p = this.overlay.get(key.toString('latin1'));
    if (p === undefined) return undefined;
    // A write applied from another node is already durable where it was made, and the broker
    // redelivers it if we crash first: serving it need not wait for our disk.
    return { value: p.rec, after: p.local ? this.log.durableAfter(p.logEnd) : null };
  }

  /**
   * The value under `key` as GET shows it (a view; copy what you keep; undefined for missing, deleted
   * and expired keys and empty sets; a counter as its decimal value; 'set' for a set), and what a
   * reply showing it must wait for (see readRecord).
   */
  readValue(key: Buffer): Read<Held> {
    const pending = this.readPending(key);
    if (pending !== undefined) return this.valueOf(key, pending.value, pending.value.length, pending.after);
    // The hot path of GET: one slice of lmdb's shared buffer (whose length is overridden, see readDurable).
    const shared = this.db.getBinaryFast(key);
    if (shared === undefined) return { value: undefined, after: null };
    if (isSimple(shared)) return { value: isTombstone(shared) ? undefined : recordValue(shared, shared.length), after: null };
    return this.valueOf(key, shared.subarray(0, shared.length), shared.length, null);
  }

  private valueOf(key: Buffer, rec: Buffer, end: number, after: Ack): Read<Held> {
    if (isAbsent(rec, Date.now())) return { value: undefined, after };
    const value = recordValue(rec, end);
    const kind = recordKind(rec);
    if (kind === KIND.counter) return { value: Buffer.from(counterValue(decodeCounter(value, true)).toString(), 'latin1'), after };
    if (kind === KIND.set) return { value: this.sets.card(key.toString('latin1'), rec) === 0 ? undefined : 'set', after };
    return { value, after };
  }

  /** The members of the set whose stored header is `header`, in byte order (setops.ts). */
  members(key: Buffer, header: Buffer): Buffer[] {
    return this.sets.members(key, header);
  }

  /** How many members the set whose stored header is `header` has. */
  cardinality(key: Buffer, header: Buffer): number {
    return this.sets.card(key.toString('latin1'), header);
  }

  /** Writes a value, versioned by this node's clock. */
  set(key: Buffer, value: Buffer): Ack {
    return this.write(key, this.clock.now(), this.opts.nodeId, 0, value, true);
  }

  /** Writes a tombstone. */
  delete(key: Buffer): Ack {
    return this.write(key, this.clock.now(), this.opts.nodeId, FLAG_TOMBSTONE, EMPTY, true);
  }

  /** Writes a state made here (store/operations.ts: counters, expiry): published like any local write. */
  writeState(key: Buffer, state: RecordState): Ack {
    const { flags, body } = encodeState(state);
    return this.write(key, state.epoch, state.epoch.node, flags, body, true);
  }

  /**
   * Merges a state made elsewhere (replication, repair) into what is stored (state.ts, DESIGN.md
   * section 4): a newer epoch wins (last writer wins on (hlc, node id) for plain values), the same
   * epoch merges (counters by per-node maxima, expiry by its newer register). A state that changes
   * nothing is a no-op, so applying is idempotent and independent of arrival order. The remote clock
   * reading is merged into ours (and clamped if too far ahead). Returns the write's `Ack`, or undefined
   * when nothing changed.
   */
  applyRemote(key: Buffer, state: RecordState): Ack | undefined {
    if (this.closed) throw new StorageError('store is closed');
    const hlc = this.clock.observe(state.epoch);
    // A local EXPIRE after this one must carry a newer version to win within the epoch.
    if (state.expiry !== undefined) this.clock.observe(state.expiry.version);
    const clamped = hlc.wall !== state.epoch.wall || hlc.counter !== state.epoch.counter;
    const incoming = clamped ? { ...state, epoch: { wall: hlc.wall, counter: hlc.counter, node: state.epoch.node } } : state;
    const k = key.toString('latin1');
    const member = isMemberKey(key);
    checkKeyKind(key, state);
    // A member of an older epoch than its set's header is dead (sets.ts): nothing to merge.
    if (member && isDead(incoming.epoch, this.headerOf(k))) return undefined;
    const current = this.readAt(key, k);
    if (current === undefined && this.mayBeForgotten(incoming)) {
      this.refusedPurged++;
      return undefined;
    }
    const done = this.merge(key, k, current, incoming);
    if (!member) return done;
    // A member implies its set's header of its epoch, which replication may deliver later, or not at
    // all if the set grew from an epoch this node already holds: merge it in (a join, like any other).
    const setK = setKeyOf(k);
    const setKey = Buffer.from(setK, 'latin1');
    const header = this.merge(setKey, setK, this.readAt(setKey, setK), { epoch: incoming.epoch, flags: kindFlags(KIND.set), expiry: undefined, payload: EMPTY });
    return header ?? done;
  }

  /** Merges `incoming` into `current`, the record under `key` (latin1 `k`); undefined if nothing changed. */
  private merge(key: Buffer, k: string, current: Buffer | undefined, incoming: RecordState): Ack | undefined {
    const merged = mergeInto(current, incoming);
    if (merged === undefined) return undefined;
    const { flags, body } = encodeState(merged);
    return this.write(key, merged.epoch, merged.epoch.node, flags, body, false, k, current);
  }

  /**
   * Whether a state for a key we do not hold was last changed (or expired) before our purge horizon:
   * it may be one whose delete or expiry we have forgotten (its tombstone purged). Taking it would
   * resurrect the key.
   */
  private mayBeForgotten(state: RecordState): boolean {
    const horizon = this.purger.purgedBefore;
    if (horizon === 0) return false;
    const expiredAt = state.expiry?.at ?? 0;
    return (expiredAt !== 0 && expiredAt < horizon) || (isSimpleState(state) ? state.epoch.wall : newestWall(state)) < horizon;
  }

  /** Told of local writes once they are acknowledged (replication publishes them). */
  onAcknowledged(listener: (writes: AcknowledgedWrite[]) => void): void {
    this.listeners.push(listener);
  }

  private write(key: Buffer, hlc: Hlc, node: string, flags: number, body: Buffer, local: boolean, known?: string, knownRec?: Buffer): Ack {
    if (this.closed) throw new StorageError('store is closed');
    const k = known ?? key.toString('latin1');
    const prev = this.overlay.get(k);
    // The record replaced: a pending one (inside its keyed buffer, at an offset) or LMDB's.
    const before = prev !== undefined ? prev.body : known !== undefined ? knownRec : this.readDurable(key);
    const at = prev !== undefined ? prev.recOffset : 0;
    const item = this.hasher.item(key, { wall: hlc.wall, counter: hlc.counter, node }, flags, body);
    // A key's hash never changes: take it from the record being replaced when there is one.
    const keyHash = before === undefined ? this.hasher.keyHash(key) : recordKeyHash(before, at);
    // An explicit literal: a spread here cost more than the hashing (measured with --prof).
    const keyed = encodeKeyedRecord(key, { wall: hlc.wall, counter: hlc.counter, node, flags, body, item, keyHash });
    const recOffset = keyedRecordOffset(key.length);
    const segment = this.tree.segmentOf(keyHash.hi);
    this.tree.replaceBytes(segment, before, at + ITEM_OFFSET, keyed, recOffset + ITEM_OFFSET);
    const logEnd = this.log.append(keyed);
    const batch = this.overlay.currentBatch;
    const entry = new PendingWrite(
      k,
      keyed,
      recOffset,
      local,
      batch,
      // A rewrite within the batch takes over the index entry its predecessor would have written.
      prev === undefined ? before === undefined : prev.newKey && prev.batch === batch,
      logEnd,
      prev,
      segment,
    );
    this.overlay.add(entry);
    this.unflushed.push(entry);
    if (before !== undefined) this.account(k, before, at, -1);
    this.account(k, keyed, recOffset, 1);
    // A new epoch of a key that had a set leaves the old epoch's members dead: remove them soon.
    if (this.sets.hasMembers(k) && before !== undefined && recordEpochId(before, at) !== recordEpochId(keyed, recOffset)) this.sets.sweepLater(k);
    if (local) this.lastLocalEnd = logEnd;
    this.scheduleFlush();
    const durable = this.log.durableAfter(logEnd);
    if (!this.overlay.overCap) return durable;
    // LMDB is far behind (a slow disk): the reply waits until it catches up, which slows the writers.
    const drained = this.overlay.drained();
    return durable === null ? drained : Promise.all([durable, drained]).then(() => undefined);
  }

  /**
   * Writes the log's buffered entries to its file (one write), then announces the local ones, and
   * settles every `flushed()` promise. If the file cannot take them (disk full), the writes are undone
   * here, the waiters are told, and a StorageError is thrown.
   */
  flush(): void {
    const waiters = this.flushWaiters;
    this.flushWaiters = [];
    let failure: Error | undefined;
    try {
      this.writeOut();
    } catch (err) {
      failure = err instanceof Error ? err : new StorageError('write-ahead log append failed', { cause: err });
      throw err;
    } finally {
      for (const w of waiters) w(failure);
    }
  }

  /** flush() without the waiters: the log write, undone on failure, then the announcements. */
  private writeOut(): void {
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

  /** Writes made and not yet in the log file: a reply that shows any of them must wait for `flushed()`. */
  get hasUnflushed(): boolean {
    return this.unflushed.length > 0;
  }

  /**
   * Resolves once the writes made so far are in the log file (rejects, with the StorageError, if they
   * could not be written and were undone). The flush runs once per turn of the event loop, after the
   * I/O callbacks: the connections that wrote in that turn share one write to the file.
   */
  flushed(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.flushWaiters.push((err) => (err === undefined ? resolve() : reject(err)));
      this.scheduleFlush();
    });
  }

  /**
   * An immediate, not a tick: a tick runs after each I/O callback, an immediate once after all of a
   * turn's, so the writes of every connection served in the turn go to the file together. Scheduled
   * from an I/O callback it costs no extra turn (and no extra epoll call).
   */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      if (this.closed) return;
      try {
        this.flush();
      } catch (err) {
        this.opts.logger.error({ err }, 'write-ahead log append failed');
      }
    });
  }

  private announce(writes: PendingWrite[]): void {
    const acked = writes.map((w) => ({ key: w.key, rec: w.rec }));
    for (const listener of this.listeners) listener(acked);
  }

  /** Takes back writes whose log append failed, newest first. */
  private undo(writes: PendingWrite[]): void {
    for (let i = writes.length - 1; i >= 0; i--) {
      const e = writes[i] as PendingWrite;
      // What it replaced: its predecessor, or (once that is in LMDB, or if there was none) LMDB's record.
      const before = e.prev?.rec ?? this.readDurable(e.key);
      this.overlay.undo(e);
      this.account(e.k, e.body, e.recOffset, -1);
      if (before !== undefined) this.account(e.k, before, 0, 1);
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
    const now = Date.now();
    for (const { key, value } of this.db.getRange({ start: prefix.length === 0 ? FIRST_CLIENT_KEY : prefix })) {
      if (!startsWith(key, prefix)) break;
      const k = key.toString('latin1');
      if (!this.isAbsentAt(k, value, now)) found.set(k, Buffer.from(key));
    }
    for (const p of this.overlay.values()) {
      if (!startsWith(p.key, prefix) || isMemberKey(p.key)) continue;
      if (this.isAbsentAt(p.k, p.rec, now)) found.delete(p.k);
      else found.set(p.k, p.key);
    }
    return [...found.values()].sort((a, b) => Buffer.compare(a, b));
  }

  /** Whether a key's record reads as absent: a tombstone, expired, or a set without members. */
  private isAbsentAt(k: string, rec: Buffer, now: number): boolean {
    return isAbsent(rec, now) || (isSetHeader(rec) && this.sets.card(k, rec) === 0);
  }

  /** Deletes every live key (as tombstones, so the deletes replicate). */
  truncate(): Ack {
    let last: Ack = null;
    for (const key of this.scan(EMPTY)) last = this.delete(key) ?? last;
    return last;
  }

  /** Removes tombstones written (and records expired) before `olderThan` (ms since the epoch), pending ones too. Returns how many. */
  async purgeTombstones(olderThan: number): Promise<number> {
    await this.settled();
    return this.purger.purge(olderThan);
  }

  /**
   * Resolves once every write so far is in LMDB, committed and synced, and the members of old set
   * epochs are removed.
   */
  async settled(): Promise<void> {
    this.flush();
    await this.overlay.settle();
    this.sets.sweepNow();
  }

  /** Applies what is pending to LMDB, syncs, deletes the log and closes. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.purger.stop();
    this.sets.stop();
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
    this.unlock();
  }

  /**
   * Counts live keys and tombstones, builds the Merkle tree from the stored item hashes (one cursor
   * scan, no value rehashed), and moves the clock past the newest stored version, so a node
   * whose wall clock went back while it was down still versions new writes after its old ones.
   */
  private countRecords(): void {
    let newest: Hlc = { wall: 0, counter: 0 };
    for (const { key, value } of this.db.getRange({})) {
      // Member keys sort first (they start with 0x00): every set's cardinality is known before its header is counted.
      if (recordKind(value) === KIND.member) this.sets.count(key.toString('latin1'), value, 0, 1);
      // The key is only read for records with an expiry and sets' headers.
      else this.counts.count(isSimple(value) ? '' : key.toString('latin1'), value, 0, 1);
      this.tree.updateBytes(this.tree.segmentOf(recordKeyHashHi(value)), value, ITEM_OFFSET, 1);
      const v = recordVersion(value);
      if (compareHlc(v, newest) > 0) newest = v;
    }
    this.clock.observe(newest);
  }
}

const EMPTY = Buffer.alloc(0);
/** Client keys start at 0x21 (rules.ts): member keys (0x00...) sort before them. */
const FIRST_CLIENT_KEY = Buffer.from([0x21]);

function startsWith(key: Buffer, prefix: Buffer): boolean {
  return key.length >= prefix.length && key.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
}
