import type { Database } from 'lmdb';
import type { PendingWrite } from './overlay.js';
import { indexKey, recordKeyHashBytes, recordKeyHashHi } from './record.js';

/** A key and its encoded record. */
export interface StoredEntry {
  readonly key: Buffer;
  readonly rec: Buffer;
}

/** What the index queries read records through: LMDB with the pending writes over it. */
export interface RecordSource {
  /** The record under `key` (latin1 `k`), pending writes first. A view: copy what you keep. */
  readAt(key: Buffer, k: string): Buffer | undefined;
  /** LMDB's record under `key`, no pending write looked at. A view: copy what you keep. */
  readDurable(key: Buffer): Buffer | undefined;
  /** Pending writes in all: with none, readDurable() is what readAt() would give. */
  pendingCount(): number;
  /** The pending writes of keys that are not in the index on disk yet. */
  unindexed(): IterableIterator<PendingWrite>;
  unindexedCount(): number;
  /** Records in all, tombstones included (to estimate how many keys a range holds). */
  recordCount(): number;
}

/** What anti-entropy asks of the records by key hash (DESIGN.md section 6). */
export interface KeyHashRanges {
  /** Every record under tree node (`depth`, `index`); keys and records are copies. */
  recordsUnder(depth: number, index: number): StoredEntry[];
  /** `recordsUnder()` for many nodes of one depth, in the order given. */
  recordsUnderEach(depth: number, indices: readonly number[]): StoredEntry[][];
  /** The records whose key hash is `keyHash` (8 bytes; normally one). Copies. */
  recordsWithKeyHash(keyHash: Buffer): StoredEntry[];
  /**
   * Visits the records in key-hash order from index key `start` (an 8-byte key hash, or a key hash and
   * a key as `indexKey` makes them: inclusive) up to key hash `end` (8 bytes, exclusive; undefined: to
   * the end), until `visit` returns false. Pending writes of keys not in LMDB's index yet are visited
   * in their place in the order. The arguments are views, valid during the call only.
   */
  visitRange(start: Buffer, end: Buffer | undefined, visit: (indexKey: Buffer, key: Buffer, rec: Buffer) => boolean): void;
}

/** A pending write and its index key. */
interface PendingEntry {
  readonly ik: Buffer;
  readonly p: PendingWrite;
}

/** Keys a range scan can read in the time it takes to set up another one (recordsUnderEach). */
const SCAN_EQUIVALENT_KEYS = 6;

/**
 * Queries by key hash over LMDB's `keyhash-index` database, which holds (key hash, key) -> empty for
 * every record: the records of a Merkle segment, or of any node of the tree below it, are one range
 * scan. Anti-entropy asks these (DESIGN.md section 6). Pending writes are included.
 */
export class KeyHashIndex implements KeyHashRanges {
  constructor(
    private readonly index: Database<Buffer, Buffer>,
    private readonly source: RecordSource,
  ) {}

  /**
   * Every record whose key hash falls under tree node (`depth`, `index`): the keys whose hash starts
   * with the node's `4 * depth` bits (depth 0 is everything; 8 is the most). Keys and records are copies.
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
    const perNode = this.source.recordCount() / 16 ** depth;
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

  visitRange(start: Buffer, end: Buffer | undefined, visit: (indexKey: Buffer, key: Buffer, rec: Buffer) => boolean): void {
    const range: { start: Buffer; end?: Buffer } = { start };
    if (end !== undefined) range.end = end;
    // Pending writes of keys the index lacks yet go in their place in the order.
    const extra = this.source.unindexedCount() > 0 ? this.unindexedBetween(start, end) : [];
    let x = 0;
    for (const ik of this.index.getKeys(range)) {
      for (; x < extra.length && (extra[x] as PendingEntry).ik.compare(ik) <= 0; x++) {
        const e = extra[x] as PendingEntry;
        // A key whose batch committed a moment ago is in both: visited once, below.
        if (!e.ik.equals(ik) && !visit(e.ik, e.p.key, e.p.rec)) return;
      }
      const key = ik.subarray(8);
      const rec = this.source.readAt(key, key.toString('latin1'));
      if (rec !== undefined && !visit(ik, key, rec)) return;
    }
    for (; x < extra.length; x++) {
      const e = extra[x] as PendingEntry;
      if (!visit(e.ik, e.p.key, e.p.rec)) return;
    }
  }

  /** The unindexed pending writes whose index keys are in [start, end), in index-key order. */
  private unindexedBetween(start: Buffer, end: Buffer | undefined): PendingEntry[] {
    const out: PendingEntry[] = [];
    for (const p of this.source.unindexed()) {
      const ik = indexKey(p.rec, p.key);
      if (ik.compare(start) >= 0 && (end === undefined || ik.compare(end) < 0)) out.push({ ik, p });
    }
    return out.sort((a, b) => a.ik.compare(b.ik));
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

  /**
   * The records of the index keys given, plus pending writes of keys not in the index on disk yet that
   * `wanted` accepts. `wanted` sees each key hash's top 32 bits, or, with `exact`, is replaced by
   * comparing the whole key hash.
   */
  private collect(indexKeys: Iterable<Buffer>, wanted: (hi: number) => boolean, exact?: Buffer): StoredEntry[] {
    const out: StoredEntry[] = [];
    // A key whose batch committed a moment ago may be in both: list it once.
    const seen = this.source.unindexedCount() > 0 ? new Set<string>() : undefined;
    // Without pending writes, no key's string is made (a scan's time is mostly per record).
    const pending = this.source.pendingCount() > 0;
    for (const ik of indexKeys) {
      if (!wanted(ik.readUInt32BE(0))) continue;
      // lmdb hands each index key out as a copy of its own: the key can be a view of it.
      const key = ik.subarray(8);
      let rec: Buffer | undefined;
      if (pending) {
        const k = key.toString('latin1');
        seen?.add(k);
        rec = this.source.readAt(key, k);
      } else {
        rec = this.source.readDurable(key);
      }
      if (rec !== undefined) out.push({ key, rec: Buffer.from(rec) });
    }
    if (seen !== undefined) {
      for (const p of this.source.unindexed()) {
        if (seen.has(p.k)) continue;
        const inRange = exact !== undefined ? recordKeyHashBytes(p.rec).equals(exact) : wanted(recordKeyHashHi(p.rec));
        if (inRange) out.push({ key: p.key, rec: p.rec });
      }
    }
    return out;
  }
}

/** 8 bytes: `hi` big-endian, then zeros (the lowest index key of that hash prefix). */
function hiPrefix(hi: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(hi, 0);
  return b;
}
