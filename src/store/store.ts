import type { Database, RootDatabase } from 'lmdb';
import { StorageError } from '../errors.js';
import { HybridClock, type Version } from '../hlc.js';
import type { Limits } from '../rules.js';
import { TreeHasher } from '../merkle/hash.js';
import { leafBitsFor, MerkleTree } from '../merkle/tree.js';
import { takeBackup, type BackupResult } from './backup.js';
import { Capacity } from './capacity.js';
import { CopyMerge } from './copy.js';
import { counterWriter } from './incarnation.js';
import { storeFigures } from './figures.js';
import { counterValue, decodeCounter } from './counter.js';
import { openDatabases, type Databases } from './databases.js';
import { KeyHashIndex, type KeyHashRanges } from './keyhash.js';
import { lockDataDirectory } from './lock.js';
import { Overlay, PendingWrite } from './overlay.js';
import { TombstonePurger } from './purge.js';
import { encodeKeyedRecord, FLAG_TOMBSTONE, isAbsent, isSimple, isTombstone, KIND, keyedKeyLength, keyedRecordOffset, keyHashOf, recordEpochId, recordKeyHash, recordKeyHashHi, recordKind, recordValue } from './record.js';
import { replayLog } from './replay.js';
import { scanKeys, visitKeyOrder } from './scan.js';
import { SetIndex } from './sets.js';
import { encodeState, type RecordState } from './state.js';
import type { CopiedRecords, CopyResult, Hashes, Held, MerkleView, Read, StoreFigures, StoreOptions, WriteSpec } from './types.js';
import { RemoteMerge } from './remote.js';
import { Tally } from './tally.js';
import { upgradeDataDirectory } from './upgrade.js';
import { WriteAheadLog } from './wal.js';
import { WritePath, type Ack, type AcknowledgedWrite } from './writepath.js';

/**
 * The node's records (docs/ARCHITECTURE.md, "The store"): a write-ahead log for durability, the pending
 * overlay for what the log holds and LMDB does not yet, and LMDB (one entry per key, the value an
 * encoded record, record.ts; tombstones included) behind them. This class is the facade: the write
 * path (writepath.ts) makes writes durable and announces them, the tally (tally.ts) keeps the Merkle
 * tree and the counts in step, the key-hash index (keyhash.ts) answers anti-entropy's range queries.
 */
export class Store {
  /** The Merkle tree over every record, tombstones and pending writes included, read-only. */
  readonly merkle: MerkleView;
  /** Records by key-hash range: what anti-entropy compares and sends. */
  readonly ranges: KeyHashRanges;
  /** A fingerprint of the cluster secret that keys the Merkle hashes: peers compare it in the handshake. */
  readonly secretFingerprint: string;
  /** The name its counter totals go under (incarnation.ts): the node id, or a new one after a start that lost some. */
  readonly counterWriter: string;

  private readonly clock: HybridClock;
  private readonly tree: MerkleTree;
  private readonly hasher: TreeHasher;
  private readonly writes: WritePath;
  private readonly overlay: Overlay;
  private readonly purger: TombstonePurger;
  private readonly sets: SetIndex;
  private readonly tally: Tally;
  private readonly remote: RemoteMerge;
  private readonly copies: CopyMerge;
  private readonly log: WriteAheadLog;
  private readonly root: RootDatabase<Buffer, Buffer>;
  private readonly db: Database<Buffer, Buffer>;
  private refused = 0;
  private closed = false;
  /** Releases the data directory's lock (lock.ts), once LMDB is closed. */
  private unlock: () => void = () => {};

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
    this.tree = new MerkleTree(opts.treeBits ?? 16, leafBitsFor(opts.treeBits ?? 16, (db.getStats() as { entryCount: number }).entryCount));
    this.merkle = this.tree;
    this.hasher = new TreeHasher(opts.clusterSecret ?? '');
    this.secretFingerprint = this.hasher.secretFingerprint;
    upgradeDataDirectory({ ...dbs, hasher: this.hasher, logger });
    const readAt = (key: Buffer, k: string): Buffer | undefined => this.readAt(key, k);
    const isPending = (k: string): boolean => this.overlay.get(k) !== undefined;
    const forgotten = (k: string, rec: Buffer): void => this.tally.forgotten(k, rec);
    this.sets = new SetIndex({ ...dbs, logger, readAt, isPending, pending: () => this.overlay.values(), onRemoved: forgotten });
    this.tally = new Tally({ tree: this.tree, sets: this.sets, readAt, capacity: opts.capacity ?? new Capacity() });
    const maxEntryBytes = 4096 + (opts.maxValueBytes ?? 64 * 1024 * 1024);
    const { nextSeq, segments } = replayLog({ ...dbs, dir: opts.path, logger, maxEntryBytes });
    const mark = { bits: this.tree.leafBits, fingerprint: this.hasher.secretFingerprint };
    this.clock.observe(this.tally.start({ ...dbs, mark, logSegments: segments, logger }));
    // After the tally took any snapshot: saving the name is a transaction of its own.
    this.counterWriter = counterWriter(dbs, { dir: opts.path, nodeId: opts.nodeId, logSegments: segments });
    this.log = new WriteAheadLog({ dir: opts.path, mode: opts.fsync ?? 'periodic', periodMs: opts.fsyncPeriodMs ?? 100, logger, firstSeq: nextSeq });
    this.overlay = new Overlay({ db, index, log: this.log, logger, flush: () => this.writes.flush() });
    this.writes = new WritePath({
      log: this.log,
      overlay: this.overlay,
      logger,
      readDurable: (key) => this.readDurable(key),
      onUndone: (e, restored) => this.tally.undone(e.k, e.body, e.recOffset, restored),
    });
    this.ranges = new KeyHashIndex(index, {
      readAt,
      readDurable: (key) => this.readDurable(key),
      pendingCount: () => this.overlay.size,
      unindexed: () => this.overlay.unindexedValues(),
      unindexedCount: () => this.overlay.unindexedCount,
      recordCount: () => this.tally.counts.total,
    });
    this.purger = new TombstonePurger({ ...dbs, logger, graceSeconds: opts.tombstoneGraceSeconds, isPending, headerOf: (k) => this.tally.headerOf(k), onRemoved: forgotten });
    this.purger.start();
    this.remote = new RemoteMerge({
      observe: (remote) => this.clock.observe(remote),
      readAt,
      headerOf: (k) => this.tally.headerOf(k),
      purgedBefore: () => this.purger.purgedBefore,
      write: (w) => this.write(w),
      onRefused: () => this.refused++,
    });
    this.copies = new CopyMerge({
      db,
      observe: (remote) => this.clock.observe(remote),
      isPending,
      purgedBefore: () => this.purger.purgedBefore,
      add: (k, keyed) => this.addCopied(k, keyed),
      remote: this.remote,
      onRefused: () => this.refused++,
    });
  }

  /** Opens the store in `opts.path`; refused (StorageError) if another running node holds that directory. */
  static open(opts: StoreOptions): Store {
    const unlock = lockDataDirectory(opts.path);
    let dbs: Databases | undefined;
    try {
      dbs = openDatabases(opts.path, opts.fsync === 'none');
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

  /** The data directory. */
  get path(): string {
    return this.opts.path;
  }

  /** The version of a new write made here: newer than every version this node has made or seen. */
  newVersion(): Version {
    return this.clock.stamp(this.opts.nodeId);
  }

  /** Live keys (tombstones and expired keys excluded), pending writes included. */
  get size(): number {
    return this.tally.counts.live;
  }

  /** Tombstones and expired records not purged yet. */
  get tombstoneCount(): number {
    return this.tally.counts.tombstones;
  }

  /** Remote writes refused because they may bring back a key whose tombstone was purged here. */
  get refusedPurged(): number {
    return this.refused;
  }

  /** The store's figures, for STATS and metrics. */
  figures(): StoreFigures {
    return storeFigures({ counts: this.tally.counts, log: this.log, overlay: this.overlay, refused: this.refused, path: this.opts.path });
  }

  /**
   * The record under `key` (a view; copy what you keep; tombstones and expired records included),
   * pending writes first, and what a reply showing it must wait for: with "always", a local write
   * not yet on disk. Replication and anti-entropy may ignore `after`: a peer holding a write that a
   * power loss takes back here is a replica of it.
   */
  read(key: Buffer): Read<Buffer | undefined> {
    const p = this.pendingOf(key);
    if (p !== undefined) return { value: p.rec, after: this.writes.ackOf(p) };
    return { value: this.readDurable(key), after: null };
  }

  /**
   * The value under `key` as GET shows it (a view; copy what you keep; undefined for missing, deleted
   * and expired keys and empty sets; a counter as its decimal value; 'set' for a set), and what a
   * reply showing it must wait for (see read).
   */
  readValue(key: Buffer): Read<Held> {
    const p = this.pendingOf(key);
    if (p !== undefined) return this.valueOf(key, p.rec, this.writes.ackOf(p));
    // The hot path of GET: one slice of lmdb's shared buffer (whose length is overridden, see readDurable).
    const shared = this.db.getBinaryFast(key);
    if (shared === undefined) return NOTHING;
    if (isSimple(shared)) return isTombstone(shared) ? NOTHING : { value: recordValue(shared, shared.length), after: null };
    return this.valueOf(key, shared.subarray(0, shared.length), null);
  }

  private valueOf(key: Buffer, rec: Buffer, after: Ack): Read<Held> {
    if (isAbsent(rec, Date.now())) return { value: undefined, after };
    const value = recordValue(rec);
    const kind = recordKind(rec);
    if (kind === KIND.counter) return { value: Buffer.from(counterValue(decodeCounter(value, true)).toString(), 'latin1'), after };
    if (kind === KIND.set) return { value: this.sets.card(key.toString('latin1'), rec) === 0 ? undefined : 'set', after };
    return { value, after };
  }

  /** The pending write of `key`; with none pending at all, found without making the key's string. */
  private pendingOf(key: Buffer): PendingWrite | undefined {
    return this.overlay.size > 0 ? this.overlay.get(key.toString('latin1')) : undefined;
  }

  private readAt(key: Buffer, k: string): Buffer | undefined {
    return this.overlay.get(k)?.rec ?? this.readDurable(key);
  }

  /**
   * LMDB's record under `key`, as a write that replaces it reads it: a plain value's or tombstone's in
   * lmdb's shared buffer itself (no view made: the write reads only fixed offsets of it, before any
   * other LMDB read), any other record as readDurable gives it.
   */
  private replacedInLmdb(key: Buffer): Buffer | undefined {
    const shared = this.db.getBinaryFast(key);
    if (shared === undefined || isSimple(shared)) return shared;
    return shared.subarray(0, shared.length);
  }

  private readDurable(key: Buffer): Buffer | undefined {
    const shared = this.db.getBinaryFast(key);
    // getBinaryFast hands out lmdb's shared buffer with an overridden length: re-slice it into an
    // ordinary view, or Buffer.from/concat and open-ended subarray() read past the record.
    return shared?.subarray(0, shared.length);
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
    return this.write({ key, version: this.newVersion(), flags: 0, body: value, origin: 'local' });
  }

  /** Writes a tombstone. */
  delete(key: Buffer): Ack {
    return this.write({ key, version: this.newVersion(), flags: FLAG_TOMBSTONE, body: EMPTY, origin: 'local' });
  }

  /** Writes a state made here (operations.ts: counters, expiry): published like any local write. */
  writeState(key: Buffer, state: RecordState): Ack {
    const { flags, body } = encodeState(state);
    return this.write({ key, version: state.epoch, flags, body, origin: 'local' });
  }

  /**
   * Merges a state made elsewhere (replication, repair) into what is stored (remote.ts). Returns the
   * write's `Ack`, or undefined when nothing changed. `hashes`: the record's hashes as its sender
   * stored them, used when the state is stored unchanged; only from a peer that proved the cluster
   * secret (anti-entropy's streams), which spares hashing every key and value again.
   */
  applyRemote(key: Buffer, state: RecordState, hashes?: Hashes): Ack | undefined {
    if (this.closed) throw new StorageError('store is closed');
    return this.remote.apply(key, state, hashes);
  }

  /**
   * Merges records copied from a peer that proved the cluster secret (anti-entropy's streams) as
   * applyRemote would, each checked as a client's write; keeps their hashes (copy.ts). Returns how many
   * changed something and what a reply about them waits for.
   */
  applyCopied(records: CopiedRecords, limits: Limits): CopyResult {
    if (this.closed) throw new StorageError('store is closed');
    return this.copies.apply(records, limits);
  }

  /** Visits the records from `from` (inclusive) in key order until `visit` returns false (scan.ts). */
  visitKeyOrder(from: Buffer, visit: (key: Buffer, rec: Buffer) => boolean): void {
    visitKeyOrder(this.db, from, visit);
  }

  /**
   * Makes the record (hashed into the Merkle tree, counted) and hands it to the write path, which logs
   * it and puts it in the overlay: every later read sees it at once.
   */
  private write(w: WriteSpec): Ack {
    if (this.closed) throw new StorageError('store is closed');
    const { key, version, flags, body } = w;
    const k = w.k ?? key.toString('latin1');
    const prev = this.overlay.get(k);
    // The record replaced: a pending one (inside its keyed buffer, at an offset) or LMDB's.
    const before = prev !== undefined ? prev.body : w.k !== undefined ? w.current : this.replacedInLmdb(key);
    const at = prev !== undefined ? prev.recOffset : 0;
    const item = w.hashes?.item ?? this.hasher.item(key, version, flags, body);
    // A key's hash never changes: take it from the record being replaced when there is one.
    const keyHash = before !== undefined ? recordKeyHash(before, at) : w.hashes !== undefined ? keyHashOf(w.hashes.keyHash) : this.hasher.keyHash(key);
    // An explicit literal: a spread here cost more than the hashing (measured with --prof).
    const keyed = encodeKeyedRecord(key, { wall: version.wall, counter: version.counter, node: version.node, flags, body, item, keyHash });
    const recOffset = keyedRecordOffset(key.length);
    this.tally.replaced(k, this.tree.segmentOf(keyHash.hi), before, at, keyed, recOffset, w.origin === 'local');
    // A new epoch of a key that had a set leaves the old epoch's members dead: remove them soon.
    if (before !== undefined && this.sets.hasMembers(k) && recordEpochId(before, at) !== recordEpochId(keyed, recOffset)) this.sets.sweepLater(k);
    return this.writes.add(new PendingWrite(k, keyed, w.origin === 'local'), before !== undefined);
  }

  /** A copied record (copy.ts) under a key that holds nothing, pending or in LMDB: as write() would store it. */
  private addCopied(k: string, keyed: Buffer): Ack {
    const recOffset = keyedRecordOffset(keyedKeyLength(keyed));
    this.tally.replaced(k, this.tree.segmentOf(recordKeyHashHi(keyed, recOffset)), undefined, 0, keyed, recOffset);
    return this.writes.add(new PendingWrite(k, keyed, false), false);
  }

  /** Told of local writes once they are acknowledged (replication publishes them). */
  onAcknowledged(listener: (writes: AcknowledgedWrite[]) => void): void {
    this.writes.onAcknowledged(listener);
  }

  /** Writes the log's buffered entries to its file now (see WritePath.flush). */
  flush(): void {
    this.writes.flush();
  }

  /** Resolves once the writes made so far are in the log file (see WritePath.flushed). */
  flushed(): Promise<void> {
    return this.writes.flushed();
  }

  /** Writes made and not yet in the log file: a reply that shows any of them must wait for `flushed()`. */
  get hasUnflushed(): boolean {
    return this.writes.hasUnflushed;
  }

  /** What a reply that reflects every write so far (DBSIZE, SCAN, HASH) must wait for. */
  acknowledgedAfter(): Ack {
    return this.writes.acknowledgedAfter();
  }

  /** The Merkle root (16 bytes), pending writes included. */
  rootHash(): Buffer {
    return this.tree.root();
  }

  /** Live keys starting with `prefix`, in byte order (scan.ts). */
  scan(prefix: Buffer): Buffer[] {
    return scanKeys({ db: this.db, pending: this.overlay.values(), cardinality: (k, rec) => this.sets.card(k, rec) }, prefix);
  }

  /** A consistent copy of the store in the new directory `dir`, taken while writes go on (backup.ts). */
  backup(dir: string): Promise<BackupResult> {
    return takeBackup({ root: this.root, path: this.opts.path, flushed: () => this.writes.flushed() }, dir);
  }

  /** Removes tombstones written (and records expired) before `olderThan` (ms since the epoch), pending ones too. Returns how many. */
  async purgeTombstones(olderThan: number): Promise<number> {
    await this.settled();
    return this.purger.purge(olderThan);
  }

  /** Resolves once every write so far is in LMDB, committed and synced, and old set epochs' members are removed. */
  async settled(): Promise<void> {
    this.writes.flush();
    await this.overlay.settle();
    this.sets.sweepNow();
  }

  /** Applies what is pending to LMDB, syncs, deletes the log and closes. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.purger.stop();
    this.sets.stop();
    this.overlay.stop();
    this.writes.close();
    this.closed = true;
    await this.overlay.settle();
    await this.log.close(true);
    // LMDB holds every write and the log is gone: the next start-up may load the tally (snapshot.ts).
    if (this.overlay.size === 0) await this.tally.save(this.clock.now());
    await this.root.close();
    this.unlock();
  }
}

const EMPTY = Buffer.alloc(0);
const NOTHING: Read<Held> = { value: undefined, after: null };
