import { open, type Database, type RootDatabase } from 'lmdb';
import type { Logger } from 'pino';
import { StorageError } from '../errors.js';
import { TreeHasher } from '../merkle/hash.js';
import { MerkleTree } from '../merkle/tree.js';
import { compareHlc, compareVersion, HybridClock, type Hlc, type Version } from './hlc.js';
import {
  decodeFormat1,
  encodeRecord,
  RECORD_FORMAT,
  isTombstone,
  ITEM_OFFSET,
  recordItem,
  recordKeyHash,
  recordKeyHashBytes,
  recordKeyHashHi,
  recordValue,
  recordVersion,
  recordVersionOf,
} from './record.js';

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
}

/** A local write, committed and synced: the encoded record under its key. */
export interface CommittedWrite {
  readonly key: Buffer;
  readonly record: Buffer;
}

/** A key and its encoded record. */
export interface StoredEntry {
  readonly key: Buffer;
  readonly rec: Buffer;
}

/** A write that LMDB has been given but has not yet committed and synced. */
interface Pending {
  readonly rec: Buffer;
  readonly done: Promise<boolean>;
  /** The key in latin1, as in `Store.pending`. */
  readonly key: string;
  /** Written by this node's clients (published by replication), not applied from elsewhere. */
  readonly local: boolean;
  /** What this write added to the live and tombstone counts. */
  readonly live: number;
  readonly tombs: number;
  /** Its Merkle segment, its item hash, and the item hash it replaced (to undo a failed commit). */
  readonly segment: number;
  readonly item: string;
  readonly replaced: string | undefined;
}

/**
 * The node's records in LMDB: one entry per key, value = encoded record (record.ts), tombstones included.
 *
 * Writes go through lmdb's asynchronous batched puts, so every write issued in one event-loop turn
 * shares one synced commit (group commit); `overlappingSync` is off so that a put's promise settles
 * only after the commit is on disk. Until then the encoded record sits in `pending`, so that later
 * reads and read-modify-writes in this process see it, and `readPending` tells the caller which
 * commit a reply built from such a read must wait for: nobody is told of a value that a crash could
 * still take back.
 */
export class Store {
  readonly clock: HybridClock;
  /** Merkle tree over every record, tombstones and pending writes included (DESIGN.md section 6). */
  readonly tree: MerkleTree;
  readonly hasher: TreeHasher;
  /** Remote writes refused because they may bring back a key whose tombstone was purged here. */
  refusedPurged = 0;
  /** Tombstones written before this time (ms) may have been purged; see `applyRemote`. */
  private purgedBefore: number;
  /** Set by every read: the commit that the value just read depends on, or null if already durable. */
  readPending: Promise<boolean> | null = null;

  private readonly pending = new Map<string, Pending>();
  private lastWrite: Promise<boolean> | null = null;
  private lastGroup: Pending[] | null = null;
  private commitListener: ((writes: CommittedWrite[]) => void) | undefined;
  private live = 0;
  private tombstones = 0;
  private purgeTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    private readonly root: RootDatabase<Buffer, Buffer>,
    private readonly db: Database<Buffer, Buffer>,
    /** (key hash, key) -> empty: the keys of a Merkle segment, or of any key-hash range, in one scan. */
    private readonly index: Database<Buffer, Buffer>,
    private readonly meta: Database<number, string>,
    private readonly opts: StoreOptions,
  ) {
    this.clock = new HybridClock(opts.maxClockSkewMs, Date.now, (remote, limit) =>
      opts.logger.warn({ remote, limit }, 'remote clock reading too far ahead; clamped'),
    );
    this.tree = new MerkleTree(opts.treeBits ?? 16);
    this.hasher = new TreeHasher(opts.clusterSecret ?? '');
    this.purgedBefore = meta.get(PURGED_BEFORE) ?? 0;
  }

  static open(opts: StoreOptions): Store {
    let root: RootDatabase<Buffer, Buffer>;
    try {
      root = open<Buffer, Buffer>({
        path: opts.path,
        keyEncoding: 'binary',
        encoding: 'binary',
        compression: false,
        overlappingSync: false,
        noMemInit: true,
      });
    } catch (err) {
      throw new StorageError(`cannot open LMDB at ${opts.path}: ${(err as Error).message}`, { cause: err });
    }
    const db = root.openDB<Buffer, Buffer>('records', { keyEncoding: 'binary', encoding: 'binary' });
    const index = root.openDB<Buffer, Buffer>('keyhash-index', { keyEncoding: 'binary', encoding: 'binary' });
    const meta = root.openDB<number, string>('meta', { keyEncoding: 'ordered-binary', encoding: 'msgpack' });
    const store = new Store(root, db, index, meta, opts);
    store.upgrade();
    store.countRecords();
    store.schedulePurge();
    return store;
  }

  /** Live keys (tombstones excluded), pending writes included. */
  get size(): number {
    this.readPending = this.pending.size > 0 ? this.lastWrite : null;
    return this.live;
  }

  get tombstoneCount(): number {
    return this.tombstones;
  }

  get pendingWrites(): number {
    return this.pending.size;
  }

  /**
   * The encoded record under `key`, tombstones included. LMDB's buffer is only valid until the next
   * read: copy what you keep.
   */
  read(key: Buffer): Buffer | undefined {
    return this.pending.size > 0 ? this.readAt(key, key.toString('latin1')) : this.readDurable(key);
  }

  /** `read()` for a key whose latin1 form (the `pending` map's key) is already known. */
  private readAt(key: Buffer, k: string): Buffer | undefined {
    const p = this.pending.get(k);
    if (p === undefined) return this.readDurable(key);
    // A write applied from another node is already durable where it was made, and the broker
    // redelivers it if we crash before our commit: serving it need not wait for our disk.
    this.readPending = p.local ? p.done : null;
    return p.rec;
  }

  private readDurable(key: Buffer): Buffer | undefined {
    this.readPending = null;
    const shared = this.db.getBinaryFast(key);
    // getBinaryFast hands out lmdb's shared buffer with an overridden length: re-slice it into an
    // ordinary view, or Buffer.from/concat and open-ended subarray() read past the record.
    return shared?.subarray(0, shared.length);
  }

  /** The live value under `key` (a view; copy what you keep), or undefined for missing and deleted keys. */
  readValue(key: Buffer): Buffer | undefined {
    if (this.pending.size > 0) {
      const rec = this.read(key);
      return rec === undefined || isTombstone(rec) ? undefined : recordValue(rec);
    }
    // The hot path of GET: one slice of lmdb's shared buffer (whose length is overridden, see readDurable).
    this.readPending = null;
    const shared = this.db.getBinaryFast(key);
    return shared === undefined || isTombstone(shared) ? undefined : recordValue(shared, shared.length);
  }

  /** Writes a value, versioned by this node's clock. Settles once the write is committed and synced. */
  set(key: Buffer, value: Buffer): Promise<boolean> {
    return this.write(key, value, false, this.clock.now(), this.opts.nodeId, true);
  }

  /** Writes a tombstone. Settles once the write is committed and synced. */
  delete(key: Buffer): Promise<boolean> {
    return this.write(key, EMPTY, true, this.clock.now(), this.opts.nodeId, true);
  }

  /**
   * Applies a write made elsewhere (replication, repair) if its version is newer than what is stored:
   * last writer wins on (hlc, node id) (DESIGN.md section 4). The same or an older version is a no-op,
   * so applying is idempotent and independent of arrival order. The remote clock reading is merged into
   * ours (and clamped if too far ahead). Returns the commit, or null when the write was not newer.
   */
  applyRemote(key: Buffer, version: Version, value: Buffer | undefined): Promise<boolean> | null {
    if (this.closed) return Promise.reject(new StorageError('store is closed'));
    const hlc = this.clock.observe(version);
    const incoming = { wall: hlc.wall, counter: hlc.counter, node: version.node };
    const k = key.toString('latin1');
    const current = this.readAt(key, k);
    if (current === undefined && hlc.wall < this.purgedBefore) {
      // A key we do not hold, written before our purge horizon: it may be one whose delete we
      // have forgotten (its tombstone purged). Taking it would resurrect a deleted key.
      this.refusedPurged++;
      return null;
    }
    if (current !== undefined && compareVersion(incoming, recordVersionOf(current)) <= 0) return null;
    return this.write(key, value ?? EMPTY, value === undefined, incoming, version.node, false, current, k);
  }

  /** Told of every local write once it is committed and synced (replication publishes them). */
  onLocalCommit(listener: (writes: CommittedWrite[]) => void): void {
    this.commitListener = listener;
  }

  private write(
    key: Buffer,
    value: Buffer,
    tombstone: boolean,
    hlc: Hlc,
    node: string,
    local: boolean,
    known?: Buffer,
    knownKey?: string,
  ): Promise<boolean> {
    if (this.closed) return Promise.reject(new StorageError('store is closed'));
    const k = knownKey ?? key.toString('latin1');
    const before = knownKey === undefined ? this.readAt(key, k) : known;
    const wasLive = before !== undefined && !isTombstone(before);
    const wasTomb = before !== undefined && !wasLive;
    const version = { wall: hlc.wall, counter: hlc.counter, node };
    const item = this.hasher.item(key, version, tombstone, value);
    // A key's hash never changes: take it from the record being replaced when there is one.
    const keyHash = before === undefined ? this.hasher.keyHash(key) : recordKeyHash(before);
    // An explicit literal: a spread here cost more than the hashing (measured with --prof).
    const rec = encodeRecord({ wall: hlc.wall, counter: hlc.counter, node, tombstone, value, item, keyHash });
    if (before === undefined) void this.index.put(indexKey(rec, key), EMPTY);
    const done = this.db.put(key, rec);
    const segment = this.tree.segmentOf(keyHash.hi);
    const replaced = before === undefined ? undefined : recordItem(before);
    const entry: Pending = {
      rec,
      done,
      key: k,
      local,
      live: (tombstone ? 0 : 1) - (wasLive ? 1 : 0),
      tombs: (tombstone ? 1 : 0) - (wasTomb ? 1 : 0),
      segment,
      item,
      replaced,
    };
    this.pending.set(k, entry);
    this.live += entry.live;
    this.tombstones += entry.tombs;
    this.tree.replace(segment, replaced, item);
    this.track(entry);
    return done;
  }

  /**
   * Every put of one LMDB transaction gets the same promise, so the entries waiting on one promise are
   * kept in one list with one settle handler, not a closure per write.
   */
  private track(entry: Pending): void {
    if (entry.done === this.lastWrite && this.lastGroup !== null) {
      this.lastGroup.push(entry);
      return;
    }
    const group = [entry];
    this.lastWrite = entry.done;
    this.lastGroup = group;
    entry.done.then(
      () => this.settle(group, null),
      (err: unknown) => this.settle(group, err),
    );
  }

  private settle(group: Pending[], err: unknown): void {
    if (this.lastGroup === group) this.lastGroup = null;
    if (err !== null) this.opts.logger.error({ err, writes: group.length }, 'LMDB commit failed');
    if (err === null && this.commitListener !== undefined) {
      const local = group.filter((e) => e.local).map((e) => ({ key: Buffer.from(e.key, 'latin1'), record: e.rec }));
      if (local.length > 0) this.commitListener(local);
    }
    for (const e of group) if (this.pending.get(e.key) === e) this.pending.delete(e.key);
    if (err === null) return;
    // The transaction never happened: undo its writes' effects, newest first.
    for (let i = group.length - 1; i >= 0; i--) {
      const e = group[i] as Pending;
      this.live -= e.live;
      this.tombstones -= e.tombs;
      if (e.replaced === undefined) this.tree.update(e.segment, e.item, -1);
      else this.tree.replace(e.segment, e.item, e.replaced);
    }
  }

  /** The Merkle root (16 bytes), pending writes included; `readPending` names the commit it waits for. */
  rootHash(): Buffer {
    this.readPending = this.pending.size > 0 ? this.lastWrite : null;
    return this.tree.root();
  }

  /**
   * Every record whose key hash falls under tree node (`depth`, `index`): the keys whose hash starts
   * with the node's `4 * depth` bits (depth 0 is everything; 8 is the most). Pending writes included;
   * keys and records are copies.
   */
  recordsUnder(depth: number, index: number): StoredEntry[] {
    return this.recordsUnderSpan(depth, index, index);
  }

  /**
   * `recordsUnder()` for many nodes of one depth, in the order given. Nodes close together are read
   * with one range scan over their span rather than a scan each: measured, a scan of one small node
   * costs ~10 µs and each key passed over in a span ~1.5 µs.
   */
  recordsUnderEach(depth: number, indices: readonly number[]): StoredEntry[][] {
    if (indices.length === 0) return [];
    const sorted = [...indices].sort((x, y) => x - y);
    const first = sorted[0] as number;
    const last = sorted[sorted.length - 1] as number;
    const perNode = (this.live + this.tombstones) / 16 ** depth;
    if ((last - first + 1) * perNode > indices.length * SCAN_EQUIVALENT_KEYS) {
      return indices.map((i) => this.recordsUnder(depth, i));
    }
    const nodeOf = (hi: number): number => (depth === 0 ? 0 : Math.floor(hi / 2 ** (32 - 4 * depth)));
    const groups = new Map<number, StoredEntry[]>(sorted.map((i) => [i, []]));
    // Keys between the wanted nodes are skipped before their records are read.
    const span = this.recordsUnderSpan(depth, first, last, (hi) => groups.has(nodeOf(hi)));
    for (const entry of span) groups.get(nodeOf(recordKeyHashHi(entry.rec)))?.push(entry);
    return indices.map((i) => groups.get(i) as StoredEntry[]);
  }

  /** The records under the nodes `first..last` of `depth` that `wanted` accepts (by key hash's top 32 bits). */
  private recordsUnderSpan(depth: number, first: number, last: number, wanted?: (hi: number) => boolean): StoredEntry[] {
    const shift = 32 - 4 * depth;
    const startHi = depth === 0 ? 0 : first * 2 ** shift;
    const endHi = depth === 0 ? 2 ** 32 : (last + 1) * 2 ** shift;
    const range: { start: Buffer; end?: Buffer } = { start: hiPrefix(startHi) };
    if (endHi < 2 ** 32) range.end = hiPrefix(endHi);
    return this.collect(this.index.getKeys(range), (hi) => hi >= startHi && hi < endHi && (wanted?.(hi) ?? true));
  }

  /** The records whose key hash is `keyHash` (8 bytes; normally one). Copies. */
  recordsWithKeyHash(keyHash: Buffer): StoredEntry[] {
    const end = Buffer.from(keyHash);
    // The first 8-byte string after every key starting with `keyHash`: increment it as a number.
    let i = 7;
    while (i >= 0 && end[i] === 0xff) end[i--] = 0;
    const range: { start: Buffer; end?: Buffer } = { start: keyHash };
    if (i >= 0) {
      end[i] = (end[i] as number) + 1;
      range.end = end;
    }
    return this.collect(this.index.getKeys(range), () => true, keyHash);
  }

  /**
   * The records of the index keys given, plus pending new keys (not in the index on disk yet) that
   * `wanted` accepts. `wanted` sees each key hash's top 32 bits, or, with `exact`, is replaced by
   * comparing the whole key hash.
   */
  private collect(indexKeys: Iterable<Buffer>, wanted: (hi: number) => boolean, exact?: Buffer): StoredEntry[] {
    const out: StoredEntry[] = [];
    const anyPending = this.pending.size > 0;
    const seen = anyPending ? new Set<string>() : undefined;
    for (const ik of indexKeys) {
      if (!wanted(ik.readUInt32BE(0))) continue;
      const key = Buffer.from(ik.subarray(8));
      let rec: Buffer | undefined;
      if (seen === undefined) {
        rec = this.readDurable(key);
      } else {
        const k = key.toString('latin1');
        seen.add(k);
        rec = this.readAt(key, k);
      }
      if (rec !== undefined) out.push({ key, rec: Buffer.from(rec) });
    }
    if (seen !== undefined) {
      for (const [k, p] of this.pending) {
        if (seen.has(k)) continue;
        const inRange = exact !== undefined ? recordKeyHashBytes(p.rec).equals(exact) : wanted(recordKeyHashHi(p.rec));
        if (inRange) out.push({ key: Buffer.from(k, 'latin1'), rec: p.rec });
      }
    }
    this.readPending = null;
    return out;
  }

  /** Live keys starting with `prefix`, in byte order. */
  scan(prefix: Buffer): Buffer[] {
    const found = new Map<string, Buffer>();
    for (const { key, value } of this.db.getRange({ start: prefix })) {
      if (!startsWith(key, prefix)) break;
      if (!isTombstone(value)) found.set(key.toString('latin1'), Buffer.from(key));
    }
    let touched = false;
    for (const [k, p] of this.pending) {
      const key = Buffer.from(k, 'latin1');
      if (!startsWith(key, prefix)) continue;
      touched = true;
      if (isTombstone(p.rec)) found.delete(k);
      else found.set(k, key);
    }
    this.readPending = touched ? this.lastWrite : null;
    return [...found.values()].sort((a, b) => Buffer.compare(a, b));
  }

  /** Deletes every live key (as tombstones, so the deletes replicate). Settles when all are synced. */
  truncate(): Promise<unknown> {
    return Promise.all(this.scan(EMPTY).map((key) => this.delete(key)));
  }

  /** Resolves once every write issued so far has settled. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.pending.values()].map((p) => p.done));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.purgeTimer);
    await Promise.allSettled([...this.pending.values()].map((p) => p.done));
    await this.root.close();
  }

  /**
   * Brings a data directory written by an earlier release up to date, in one transaction: format-1
   * records (no hashes) are rewritten as format 2, and the key-hash index is rebuilt if it does not
   * hold exactly one entry per record.
   */
  private upgrade(): void {
    const indexed = (this.index.getStats() as { entryCount: number }).entryCount;
    const records = (this.db.getStats() as { entryCount: number }).entryCount;
    // Only directories not yet marked as holding format 2 need the scan for older records.
    const current = this.meta.get(RECORD_FORMAT_KEY) === RECORD_FORMAT;
    if (current && indexed === records) return;
    const old: [Buffer, Buffer][] = [];
    if (!current) {
      for (const { key, value } of this.db.getRange({})) {
        if (value[0] === 1) old.push([Buffer.from(key), Buffer.from(value.subarray(0, value.length))]);
      }
    }
    this.root.transactionSync(() => {
      for (const [key, buf] of old) {
        const r = decodeFormat1(buf);
        const version = { wall: r.wall, counter: r.counter, node: r.node };
        const item = this.hasher.item(key, version, r.tombstone, r.value);
        const keyHash = this.hasher.keyHash(key);
        void this.db.put(key, encodeRecord({ ...r, item, keyHash }));
      }
      const stale = [...this.index.getKeys({})].map((k) => Buffer.from(k));
      for (const k of stale) void this.index.remove(k);
      for (const { key, value } of this.db.getRange({})) void this.index.put(indexKey(value, key), EMPTY);
      void this.meta.put(RECORD_FORMAT_KEY, RECORD_FORMAT);
    });
    if (records > 0) this.opts.logger.info({ upgraded: old.length, indexed: records }, 'data directory upgraded');
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

  /**
   * Tombstones older than the grace period are removed, never earlier (DESIGN.md section 4). The check
   * runs again inside the write transaction, so a key rewritten meanwhile is left alone.
   */
  private schedulePurge(): void {
    const every = Math.min(Math.max((this.opts.tombstoneGraceSeconds * 1000) / 10, 1000), 600_000);
    this.purgeTimer = setTimeout(() => {
      this.purgeTombstones(Date.now() - this.opts.tombstoneGraceSeconds * 1000)
        .catch((err: unknown) => this.opts.logger.error({ err }, 'tombstone purge failed'))
        .finally(() => {
          if (!this.closed) this.schedulePurge();
        });
    }, every);
    this.purgeTimer.unref();
  }

  /** Removes tombstones written before `olderThan` (ms since the epoch). Returns how many. */
  async purgeTombstones(olderThan: number): Promise<number> {
    const expired: [Buffer, Buffer][] = [];
    for (const { key, value } of this.db.getRange({})) {
      if (isTombstone(value) && recordVersion(value).wall < olderThan && !this.pending.has(key.toString('latin1'))) {
        expired.push([Buffer.from(key), Buffer.from(value.subarray(0, value.length))]);
      }
    }
    if (expired.length === 0) return 0;
    let removed = 0;
    await this.db.transaction(() => {
      for (const [key, rec] of expired) {
        const now = this.db.getBinary(key);
        if (now !== undefined && now.equals(rec)) {
          void this.db.remove(key);
          void this.index.remove(indexKey(rec, key));
          this.tree.updateBytes(this.tree.segmentOf(recordKeyHashHi(rec)), rec, ITEM_OFFSET, -1);
          removed++;
        }
      }
      if (removed > 0 && olderThan > this.purgedBefore) {
        this.purgedBefore = olderThan;
        void this.meta.put(PURGED_BEFORE, olderThan);
      }
    });
    this.tombstones -= removed;
    if (removed > 0) this.opts.logger.info({ removed }, 'purged expired tombstones');
    return removed;
  }
}

const EMPTY = Buffer.alloc(0);
const PURGED_BEFORE = 'purged_before';
/** The record format every record of the directory is in (absent before format 2). */
const RECORD_FORMAT_KEY = 'record_format';
/** Keys a range scan can read in the time it takes to set up another one (recordsUnderEach). */
const SCAN_EQUIVALENT_KEYS = 6;

/** 8 bytes: `hi` big-endian, then zeros (the lowest index key of that hash prefix). */
function hiPrefix(hi: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(hi, 0);
  return b;
}

/** The index key of a record: its key hash (8 bytes, big-endian, as stored in `rec`), then the key. */
function indexKey(rec: Buffer, key: Buffer): Buffer {
  return Buffer.concat([recordKeyHashBytes(rec), key]);
}

function startsWith(key: Buffer, prefix: Buffer): boolean {
  return key.length >= prefix.length && key.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
}
