import type { Database } from 'lmdb';
import { compareHlc, type Hlc } from '../hlc.js';
import type { MerkleTree } from '../merkle/tree.js';
import { RecordCounts } from './counts.js';
import { setKeyOf } from './members.js';
import { isSimple, ITEM_OFFSET, KIND, recordEpochId, recordKeyHashHi, recordKind, recordVersion } from './record.js';
import { isSetHeader, type SetIndex } from './sets.js';

export interface TallyOptions {
  readonly tree: MerkleTree;
  readonly sets: SetIndex;
  /** The record under a key (latin1 `k`), pending writes first (a view). */
  readonly readAt: (key: Buffer, k: string) => Buffer | undefined;
}

/**
 * What the store knows about all its records at once, kept in step with every record that comes and
 * goes: the Merkle tree (DESIGN.md section 6), the live, tombstone and expiring counts (counts.ts) and
 * the sets' cardinalities (sets.ts). Built by one scan at start-up (`countAll`), then adjusted per write.
 */
export class Tally {
  readonly counts: RecordCounts;
  private readonly tree: MerkleTree;
  private readonly sets: SetIndex;

  constructor(private readonly opts: TallyOptions) {
    this.tree = opts.tree;
    this.sets = opts.sets;
    this.counts = new RecordCounts((k, rec, o) => this.sets.card(k, rec, o) === 0);
  }

  /**
   * A write of the keyed record `keyed` (its record at `recOffset`, key `k` in latin1, Merkle segment
   * `segment`) over `before` (the record at `at` of that buffer; undefined for a new key).
   */
  replaced(k: string, segment: number, before: Buffer | undefined, at: number, keyed: Buffer, recOffset: number): void {
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
   * Counts every record of `db` and adds its stored item hash to the tree (one cursor scan, no value
   * rehashed). Returns the newest version stored, which the clock must move past: a node whose wall
   * clock went back while it was down still versions new writes after its old ones.
   */
  countAll(db: Database<Buffer, Buffer>): Hlc {
    let newest: Hlc = { wall: 0, counter: 0 };
    for (const { key, value } of db.getRange({})) {
      // Member keys sort first (they start with 0x00): every set's cardinality is known before its header is counted.
      if (recordKind(value) === KIND.member) this.sets.count(key.toString('latin1'), value, 0, 1);
      // The key is only read for records with an expiry and sets' headers.
      else this.counts.count(isSimple(value) ? '' : key.toString('latin1'), value, 0, 1);
      this.tree.updateBytes(this.tree.segmentOf(recordKeyHashHi(value)), value, ITEM_OFFSET, 1);
      const v = recordVersion(value);
      if (compareHlc(v, newest) > 0) newest = v;
    }
    return newest;
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
}
