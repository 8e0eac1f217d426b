import type { Logger } from 'pino';
import { compareHlc, type Hlc } from '../hlc.js';
import { LEAF_ENTRY, type MerkleTree } from '../merkle/tree.js';
import { RecordCounts } from './counts.js';
import type { RecordScan } from './databases.js';
import { setKeyOf } from './members.js';
import type { Capacity } from './capacity.js';
import { isAbsent, isSimple, isTombstone, ITEM_OFFSET, KIND, recordEpochId, recordKeyHashHi, recordKind, recordVersion } from './record.js';
import { isSetHeader, type SetIndex } from './sets.js';
import { decodeEntries, encodeEntries, saveSnapshot, takeSnapshot, type Snapshot, type SnapshotMark, type SnapshotTarget } from './snapshot.js';

export interface TallyOptions {
  readonly tree: MerkleTree;
  readonly sets: SetIndex;
  /** The record under a key (latin1 `k`), pending writes first (a view). */
  readonly readAt: (key: Buffer, k: string) => Buffer | undefined;
  /** `[storage] memory_limit_mb`: a local write that would pass it is refused before anything changes. */
  readonly capacity: Capacity;
}

/** What the tally starts from (`start`). */
export interface TallyStart extends SnapshotTarget {
  readonly scan: RecordScan;
  /** The tree's bits and the secret's fingerprint: a snapshot saved with others is not used. */
  readonly mark: SnapshotMark;
  /** Log segments found at start-up (replay.ts): after a crash LMDB may hold more than a snapshot says. */
  readonly logSegments: number;
  readonly logger: Logger;
}

/**
 * What the store knows about all its records at once, kept in step with every record that comes and
 * goes: the Merkle tree (DESIGN.md section 6), the live, tombstone and expiring counts (counts.ts) and
 * the sets' cardinalities (sets.ts). Built at start-up (`start`: from the snapshot of a clean stop, or
 * by one scan), then adjusted per write, and saved at a clean stop (`save`).
 */
export class Tally {
  readonly counts: RecordCounts;
  private readonly tree: MerkleTree;
  private readonly sets: SetIndex;
  /** The newest version stored at start-up (or the floor a snapshot saved). */
  private newest: Hlc = { wall: 0, counter: 0 };
  private target: TallyStart | undefined;
  /** The start-up's deletion of the last snapshot, done on lmdb's write thread (snapshot.ts). */
  private snapshotRemoved: Promise<void> = Promise.resolve();

  constructor(private readonly opts: TallyOptions) {
    this.tree = opts.tree;
    this.sets = opts.sets;
    this.counts = new RecordCounts(
      (k, rec, o) => this.sets.card(k, rec, o) === 0,
      (k) => k.length + (opts.readAt(Buffer.from(k, 'latin1'), k)?.length ?? 0),
    );
    opts.capacity.measureWith(() => this.counts.liveBytes);
  }

  /**
   * A write of the keyed record `keyed` (its record at `recOffset`, key `k` in latin1, Merkle segment
   * `segment`) over `before` (the record at `at` of that buffer; undefined for a new key). A `local`
   * write (a client's) that would grow the data past `[storage] memory_limit_mb` throws StorageFullError first.
   */
  replaced(k: string, segment: number, before: Buffer | undefined, at: number, keyed: Buffer, recOffset: number, local = false): void {
    if (local && this.opts.capacity.limitBytes > 0) this.admit(k, before, at, keyed, recOffset);
    this.tree.replaceBytes(segment, before, at + ITEM_OFFSET, keyed, recOffset + ITEM_OFFSET);
    if (before !== undefined) this.account(k, before, at, -1);
    this.account(k, keyed, recOffset, 1);
  }

  /** The inverse of `replaced`: the record at `recOffset` of `body` goes, `restored` (at 0) comes back. */
  undone(k: string, body: Buffer, recOffset: number, restored: Buffer | undefined): void {
    this.account(k, body, recOffset, -1);
    if (restored !== undefined) this.account(k, restored, 0, 1);
    const segment = this.tree.segmentOf(recordKeyHashHi(body, recOffset));
    if (restored === undefined) this.tree.updateBytes(segment, body, recOffset + ITEM_OFFSET, -1);
    else this.tree.replaceBytes(segment, body, recOffset + ITEM_OFFSET, restored, ITEM_OFFSET);
  }

  /** A record removed from LMDB (purged, or a member of an old set epoch): out of the tree and the counts. */
  forgotten(k: string, rec: Buffer): void {
    this.tree.updateBytes(this.tree.segmentOf(recordKeyHashHi(rec)), rec, ITEM_OFFSET, -1);
    this.account(k, rec, 0, -1);
  }

  /** The record of the set that the member key `k` (latin1) belongs to. */
  headerOf(k: string): Buffer | undefined {
    const setK = setKeyOf(k);
    return this.opts.readAt(Buffer.from(setK, 'latin1'), setK);
  }

  /**
   * Builds the tally at start-up: from the snapshot that the last clean stop saved when it is valid
   * and the log left nothing (snapshot.ts says when), else by one scan of every record. Any snapshot
   * is deleted, asynchronously (`save` waits for that). Returns what the clock must move past.
   */
  start(s: TallyStart): Hlc {
    this.target = s;
    const began = performance.now();
    const found = takeSnapshot(s, s.mark);
    if (found !== undefined) {
      const taken = found.taken;
      this.snapshotRemoved = found.removed;
      const why = 'ignored' in taken ? taken.ignored : s.logSegments > 0 ? 'the write-ahead log was not empty' : this.restore(taken.snapshot);
      if (why === undefined) {
        s.logger.debug({ records: this.counts.total, ms: Math.round(performance.now() - began) }, 'counts and Merkle tree loaded from the snapshot of the last clean stop');
        return this.newest;
      }
      s.logger.info({ why }, 'snapshot of the last clean stop not used; counting every record');
    }
    this.newest = this.countAll(s.scan);
    s.logger.debug({ records: this.counts.total, ms: Math.round(performance.now() - began) }, 'counted every record');
    return this.newest;
  }

  /**
   * Counts every record and adds its stored item hash to the tree (one cursor scan, no value rehashed,
   * no record copied). Returns the newest version stored, which the clock must move past: a node whose
   * wall clock went back while it was down still versions new writes after its old ones.
   */
  countAll(scan: RecordScan): Hlc {
    let newest: Hlc = { wall: 0, counter: 0 };
    scan((rec, keyOf, keyBytes) => {
      // Member keys sort first (they start with 0x00): every set's cardinality is known before its header is counted.
      if (recordKind(rec) === KIND.member) {
        this.sets.count(keyOf(), rec, 0, 1);
        if (!isTombstone(rec)) this.counts.member(keyBytes + rec.length, 1);
      }
      // The key is only read for records with an expiry and sets' headers.
      else this.counts.count(isSimple(rec) ? '' : keyOf(), rec, 0, 1, keyBytes + rec.length);
      this.tree.updateBytes(this.tree.segmentOf(recordKeyHashHi(rec)), rec, ITEM_OFFSET, 1);
      const v = recordVersion(rec);
      if (compareHlc(v, newest) > 0) newest = v;
    });
    return newest;
  }

  /**
   * Saves what the tally knows as the snapshot of a clean stop, with `floor` (the clock's reading) as
   * what the clock must move past: only once LMDB holds every write and the log is deleted. A failure
   * costs the next start-up a scan, nothing else.
   */
  async save(floor: Hlc): Promise<void> {
    const t = this.target;
    if (t === undefined) return;
    // Not before the start-up's deletion of the last one: it would delete this one (same keys).
    await this.snapshotRemoved;
    try {
      const { live, tombstones, liveBytes, expiring } = this.counts.saved();
      const sets = this.sets.saved();
      saveSnapshot(t, t.mark, {
        floor: compareHlc(floor, this.newest) > 0 ? floor : this.newest,
        live,
        tombstones,
        liveBytes,
        tree: this.tree.encodeLeaves(),
        expiring: encodeEntries(expiring),
        cards: encodeEntries(sets.cards),
        records: encodeEntries(sets.records),
      });
    } catch (err) {
      t.logger.warn({ err }, 'cannot save the snapshot of the counts and the Merkle tree; the next start-up counts every record');
    }
  }

  /** Takes the tally from a snapshot, every part parsed before any is used; why not, if it cannot. */
  private restore(s: Snapshot): string | undefined {
    let parts: [Map<string, number>, Map<string, number>, Map<string, number>];
    try {
      if (!isCount(s.live) || !isCount(s.tombstones) || !isCount(s.liveBytes)) throw new RangeError('counts');
      checkTree(s.tree, this.tree.leafBits);
      parts = [decodeEntries(s.expiring), decodeEntries(s.cards), decodeEntries(s.records)];
    } catch (err) {
      return `unreadable: ${(err as Error).message}`;
    }
    for (let o = 0; o < s.tree.length; o += LEAF_ENTRY) this.tree.updateBytes(s.tree.readUInt32LE(o), s.tree, o + 4, 1);
    this.counts.restore(s.live, s.tombstones, s.liveBytes, parts[0]);
    this.sets.restore(parts[1], parts[2]);
    this.newest = s.floor;
    return undefined;
  }

  /**
   * Adds (`sign` 1) or takes back (-1) the record at `o` of `rec` (key `k`, latin1) in the counts. A
   * member record counts towards its set's cardinality; when that crosses 0, the set's header (which
   * counts as a tombstone while the set is empty) is counted again.
   */
  private account(k: string, rec: Buffer, o: number, sign: 1 | -1): void {
    const bytes = k.length + rec.length - o;
    if (recordKind(rec, o) !== KIND.member) {
      this.counts.count(k, rec, o, sign, bytes);
      return;
    }
    if (!isTombstone(rec, o)) this.counts.member(bytes, sign);
    const setK = this.sets.crossing(k, rec, o, sign);
    const header = setK === undefined ? undefined : this.headerOf(k);
    const recount = header !== undefined && isSetHeader(header) && recordEpochId(header) === recordEpochId(rec, o);
    const headerBytes = (setK?.length ?? 0) + (header?.length ?? 0);
    // Taken back under the cardinality it was counted with, added again under the new one.
    if (recount) this.counts.count(setK as string, header, 0, -1, headerBytes);
    this.sets.count(k, rec, o, sign);
    if (recount) this.counts.count(setK as string, header, 0, 1, headerBytes);
  }

  /** Refuses (StorageFullError) a client write that grows the data past the limit; one that does not grow it passes. */
  private admit(k: string, before: Buffer | undefined, at: number, keyed: Buffer, recOffset: number): void {
    const counted = (rec: Buffer, o: number): number => (isAbsent(rec, Date.now(), o) ? 0 : k.length + rec.length - o);
    this.opts.capacity.admit(counted(keyed, recOffset) - (before === undefined ? 0 : counted(before, at)));
  }
}

/** Throws unless `buf` holds whole leaf entries (MerkleTree.encodeLeaves) of a tree of `bits`. */
function checkTree(buf: Buffer, bits: number): void {
  if (buf.length % LEAF_ENTRY !== 0) throw new RangeError('tree cut short');
  for (let o = 0; o < buf.length; o += LEAF_ENTRY) if (buf.readUInt32LE(o) >= 2 ** bits) throw new RangeError('no such segment');
}

function isCount(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}
