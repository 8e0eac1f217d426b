import { ChildSums } from '../merkle/tree.js';
import { ITEM_OFFSET, recordKeyHashHi, type Store, type StoredEntry } from '../store/index.js';
import { WINDOW } from './diff.js';

/**
 * Tree nodes as both sides of an exchange see them. A node is (depth, index): the keys whose 32-bit
 * key-hash prefix starts with the `4 * depth` bits of `index`. Down to the store's segment depth the
 * sums come from the in-memory tree; below it (a segment holding many keys) they are summed on
 * demand from the node's records, found through the key-hash index.
 */
export function sumsBelow(store: Store, depth: number, index: number, levels: number, records?: readonly StoredEntry[]): Buffer {
  const merkle = store.merkle;
  if (depth + levels <= merkle.depth) {
    if (levels === 1) return merkle.children(depth, index);
    const parts: Buffer[] = [];
    for (let c = 0; c < 16; c++) parts.push(merkle.children(depth + 1, index * 16 + c));
    return Buffer.concat(parts);
  }
  const count = 16 ** levels;
  const sums = new ChildSums(count);
  const shift = 32 - 4 * (depth + levels);
  for (const { rec } of records ?? store.ranges.recordsUnder(depth, index)) {
    sums.add((recordKeyHashHi(rec) >>> shift) & (count - 1), rec, ITEM_OFFSET);
  }
  return sums.toBuffer();
}

/** The windows (`width` bytes at `offset` of each 16-byte sum) of `sums`, packed. */
export function windowsOf(sums: Buffer, offset: number, width = WINDOW): Buffer {
  const n = sums.length / 16;
  const out = Buffer.allocUnsafe(n * width);
  for (let i = 0; i < n; i++) sums.copy(out, i * width, i * 16 + offset, i * 16 + offset + width);
  return out;
}

/** Whether sum `i`'s window differs: ours in full sums, theirs packed. */
export function windowDiffers(mine: Buffer, theirs: Buffer, i: number, offset: number, width = WINDOW): boolean {
  return mine.compare(theirs, i * width, i * width + width, i * 16 + offset, i * 16 + offset + width) !== 0;
}

/** Whether sum `i` (16 bytes) of `sums` is zero: the node holds no record. */
export function isZero(sums: Buffer, i = 0): boolean {
  for (let b = i * 16; b < i * 16 + 16; b++) if (sums[b] !== 0) return false;
  return true;
}

/**
 * The records of the tree nodes a message is about, below the in-memory tree: read with one range
 * query per depth for all of them (`load`), and a child's taken from its parent's when those are at
 * hand. Made per message: it holds what that message's nodes hold, no more.
 */
export class NodeRecords {
  private readonly cache = new Map<number, Map<number, readonly StoredEntry[]>>();

  constructor(private readonly store: Store) {}

  /** Reads the records of these (depth, index) nodes that are below the in-memory tree. */
  load(nodes: readonly (readonly [number, number])[]): void {
    const byDepth = new Map<number, Set<number>>();
    for (const [depth, index] of nodes) {
      if (depth < this.store.merkle.depth || this.known(depth, index)) continue;
      let set = byDepth.get(depth);
      if (set === undefined) byDepth.set(depth, (set = new Set()));
      set.add(index);
    }
    for (const [depth, set] of byDepth) {
      const indices = [...set];
      const lists = this.store.ranges.recordsUnderEach(depth, indices);
      const level = this.level(depth);
      indices.forEach((index, k) => level.set(index, lists[k] ?? []));
    }
  }

  /** The records under node (`depth`, `index`). */
  get(depth: number, index: number): readonly StoredEntry[] {
    const hit = this.cache.get(depth)?.get(index);
    if (hit !== undefined) return hit;
    const parent = depth > 0 ? this.cache.get(depth - 1)?.get(Math.floor(index / 16)) : undefined;
    const shift = 32 - 4 * depth;
    const records = parent !== undefined ? parent.filter(({ rec }) => recordKeyHashHi(rec) >>> shift === index) : this.store.ranges.recordsUnder(depth, index);
    this.level(depth).set(index, records);
    return records;
  }

  private known(depth: number, index: number): boolean {
    return this.cache.get(depth)?.has(index) === true || (depth > 0 && this.cache.get(depth - 1)?.has(Math.floor(index / 16)) === true);
  }

  private level(depth: number): Map<number, readonly StoredEntry[]> {
    let level = this.cache.get(depth);
    if (level === undefined) this.cache.set(depth, (level = new Map<number, readonly StoredEntry[]>()));
    return level;
  }
}
