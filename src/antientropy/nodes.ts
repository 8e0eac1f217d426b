import { ChildSums } from '../merkle/tree.js';
import { ITEM_OFFSET, recordKeyHashHi, type Store, type StoredEntry } from '../store/index.js';
import { HASH_WINDOW } from './wire.js';

/**
 * Tree nodes as both sides of an exchange see them. A node is (depth, index): the keys whose 32-bit
 * key-hash prefix starts with the `4 * depth` bits of `index`. Down to the store's segment depth the
 * sums come from the in-memory tree; below it (a segment holding many keys) they are summed on
 * demand from the segment's records, found through the key-hash index.
 */
export function childSums(store: Store, depth: number, index: number, records?: StoredEntry[]): Buffer {
  if (depth < store.merkle.depth) return store.merkle.children(depth, index);
  const sums = new ChildSums();
  const shift = 32 - 4 * (depth + 1);
  for (const { rec } of records ?? store.ranges.recordsUnder(depth, index)) {
    sums.add((recordKeyHashHi(rec) >>> shift) & 15, rec, ITEM_OFFSET);
  }
  return sums.toBuffer();
}

/** Whether the windows (HASH_WINDOW bytes at `offset`) of child `c`'s sum differ: ours in full sums, theirs packed. */
export function windowDiffers(mine: Buffer, theirs: Buffer, c: number, offset: number): boolean {
  const w = HASH_WINDOW;
  return mine.compare(theirs, c * w, c * w + w, c * 16 + offset, c * 16 + offset + w) !== 0;
}
