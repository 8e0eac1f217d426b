/**
 * A fixed-shape Merkle tree of modular sums (DESIGN.md section 6). A key belongs to one of 2^bits
 * segments (the top bits of its keyed hash); a segment holds the sum, mod 2^128, of the item hashes of
 * its records; each inner node of the 16-ary tree holds the sum of its 16 children, and the root the sum
 * of everything. Addition is order-free, so a write updates one path (leafBits/4 + 1 nodes) by
 * subtracting the old item hash and adding the new one: the tree is never rebuilt per write.
 *
 * The tree may hold levels below the segments (`leafBits` > `bits`): a store with many records per
 * segment keeps them so that anti-entropy reads no records to split a segment (the sums do not depend
 * on how deep the tree is kept: replicas keeping different depths compare alike).
 */
export class MerkleTree {
  /** levels[d] holds 16^d nodes of four 32-bit little-endian words each; the last level is the leaves. */
  private readonly levels: Uint32Array[];

  /** `bits`: the segment bits of the cluster's config; `leafBits`: of the deepest level kept (bits or more). */
  constructor(
    readonly bits = 16,
    readonly leafBits = bits,
  ) {
    if (bits % 4 !== 0 || bits < 4 || bits > 24) throw new RangeError('bits must be a multiple of 4 in 4..24');
    if (leafBits % 4 !== 0 || leafBits < bits || leafBits > 24) throw new RangeError('leaf bits must be a multiple of 4 in bits..24');
    this.levels = [];
    for (let d = 0; d <= leafBits / 4; d++) this.levels.push(new Uint32Array(4 * 16 ** d));
  }

  /** The leaf of a key whose key hash has these top 32 bits. */
  segmentOf(hi: number): number {
    return hi >>> (32 - this.leafBits);
  }

  /** Depth of the leaf level, the deepest the tree keeps (the root is depth 0). */
  get depth(): number {
    return this.leafBits / 4;
  }

  /**
   * Replaces the item hash at `from[fromOffset]` (none if `from` is undefined) by the one at
   * `to[toOffset]` in `segment`: adds their difference, mod 2^128 word by word with borrows, along the
   * path once, instead of a removal and an addition.
   */
  replaceBytes(segment: number, from: Buffer | undefined, fromOffset: number, to: Buffer, toOffset: number): void {
    if (from === undefined) return this.updateBytes(segment, to, toOffset, 1);
    let d = (le32(to, toOffset) >>> 0) - (le32(from, fromOffset) >>> 0);
    const w0 = d | 0;
    d = (le32(to, toOffset + 4) >>> 0) - (le32(from, fromOffset + 4) >>> 0) - (d < 0 ? 1 : 0);
    const w1 = d | 0;
    d = (le32(to, toOffset + 8) >>> 0) - (le32(from, fromOffset + 8) >>> 0) - (d < 0 ? 1 : 0);
    const w2 = d | 0;
    d = (le32(to, toOffset + 12) >>> 0) - (le32(from, fromOffset + 12) >>> 0) - (d < 0 ? 1 : 0);
    this.add(segment, w0, w1, w2, d | 0, 1);
  }

  /** Adds (sign 1) or removes (sign -1) the 16-byte item hash at `buf[offset]` in `segment`. */
  updateBytes(segment: number, buf: Buffer, offset: number, sign: 1 | -1): void {
    this.add(segment, le32(buf, offset), le32(buf, offset + 4), le32(buf, offset + 8), le32(buf, offset + 12), sign);
  }

  private add(segment: number, w0: number, w1: number, w2: number, w3: number, sign: 1 | -1): void {
    let index = segment;
    for (let d = this.depth; d >= 0; d--) {
      const level = this.levels[d] as Uint32Array;
      if (sign === 1) add128(level, index * 4, w0, w1, w2, w3);
      else sub128(level, index * 4, w0, w1, w2, w3);
      index >>>= 4;
    }
  }

  /** The 16-byte sum held by node `index` at `depth` (depth 0: the root). */
  node(depth: number, index: number): Buffer {
    const level = this.levels[depth];
    if (level === undefined || index < 0 || index * 4 >= level.length) throw new RangeError('no such node');
    const out = Buffer.allocUnsafe(16);
    for (let i = 0; i < 4; i++) out.writeUInt32LE(level[index * 4 + i] as number, i * 4);
    return out;
  }

  root(): Buffer {
    return this.node(0, 0);
  }

  /** The 16 children of node `index` at `depth`, concatenated (256 bytes). */
  children(depth: number, index: number): Buffer {
    const level = this.levels[depth + 1];
    if (level === undefined || index < 0 || index * 64 >= level.length) throw new RangeError('no such node');
    const out = Buffer.allocUnsafe(256);
    for (let i = 0; i < 64; i++) out.writeUInt32LE(level[index * 64 + i] as number, i * 4);
    return out;
  }

  /**
   * The leaves whose sums are not zero, in order, as entries of LEAF_ENTRY bytes: the leaf's number
   * (u32) and its sum (16 bytes), little-endian. What a snapshot keeps of the tree (the rest is sums).
   */
  encodeLeaves(): Buffer {
    const leaves = this.levels[this.depth] as Uint32Array;
    let n = 0;
    for (let o = 0; o < leaves.length; o += 4) if (!isZero128(leaves, o)) n++;
    const out = Buffer.allocUnsafe(n * LEAF_ENTRY);
    let at = 0;
    for (let o = 0; o < leaves.length; o += 4) {
      if (isZero128(leaves, o)) continue;
      out.writeUInt32LE(o / 4, at);
      for (let w = 0; w < 4; w++) out.writeUInt32LE(leaves[o + w] as number, at + 4 + 4 * w);
      at += LEAF_ENTRY;
    }
    return out;
  }

  /** Empties the tree. */
  clear(): void {
    for (const level of this.levels) level.fill(0);
  }
}

/**
 * The leaf bits of the tree a store of `records` records keeps for segment bits `bits`: one level below
 * the segments (16 times the leaves, 16 bytes each) once they hold more than 4 records on average, where
 * anti-entropy would otherwise read a differing segment's records to split it; at most 20 bits (17 MB:
 * 24 would be 268 MB, a memory cost only a configured segment_bits should bring). Chosen at start-up.
 */
export function leafBitsFor(bits: number, records: number): number {
  return records > 4 * 2 ** bits && bits + 4 <= MAX_CHOSEN_LEAF_BITS ? bits + 4 : bits;
}

const MAX_CHOSEN_LEAF_BITS = 20;

/** Bytes of an entry of `MerkleTree.encodeLeaves`: the leaf's number (u32), its sum (16 bytes). */
export const LEAF_ENTRY = 20;

function isZero128(a: Uint32Array, o: number): boolean {
  return a[o] === 0 && a[o + 1] === 0 && a[o + 2] === 0 && a[o + 3] === 0;
}

/**
 * a[o..o+3] += (w0..w3), little-endian words, carries propagated, mod 2^128. The words come as signed
 * 32-bit integers (unboxed) and are read as unsigned.
 */
function add128(a: Uint32Array, o: number, w0: number, w1: number, w2: number, w3: number): void {
  let s = (a[o] as number) + (w0 >>> 0);
  a[o] = s >>> 0;
  s = (a[o + 1] as number) + (w1 >>> 0) + (s > 0xffffffff ? 1 : 0);
  a[o + 1] = s >>> 0;
  s = (a[o + 2] as number) + (w2 >>> 0) + (s > 0xffffffff ? 1 : 0);
  a[o + 2] = s >>> 0;
  s = (a[o + 3] as number) + (w3 >>> 0) + (s > 0xffffffff ? 1 : 0);
  a[o + 3] = s >>> 0;
}

/** a[o..o+3] -= (w0..w3), borrows propagated, mod 2^128 (words as in add128). */
function sub128(a: Uint32Array, o: number, w0: number, w1: number, w2: number, w3: number): void {
  let d = (a[o] as number) - (w0 >>> 0);
  a[o] = d >>> 0;
  d = (a[o + 1] as number) - (w1 >>> 0) - (d < 0 ? 1 : 0);
  a[o + 1] = d >>> 0;
  d = (a[o + 2] as number) - (w2 >>> 0) - (d < 0 ? 1 : 0);
  a[o + 2] = d >>> 0;
  d = (a[o + 3] as number) - (w3 >>> 0) - (d < 0 ? 1 : 0);
  a[o + 3] = d >>> 0;
}

/** Sixteen 128-bit sums, one per child of a node, filled from item hashes (nodes below the stored tree). */
export class ChildSums {
  private readonly words: Uint32Array;

  /** `count` sums: a node's 16 children, or its 256 grandchildren. */
  constructor(readonly count = 16) {
    this.words = new Uint32Array(count * 4);
  }

  /** Adds the 16-byte item hash at `buf[offset]` to child `child`. */
  add(child: number, buf: Buffer, offset: number): void {
    add128(this.words, child * 4, le32(buf, offset), le32(buf, offset + 4), le32(buf, offset + 8), le32(buf, offset + 12));
  }

  /** The sums, 16 bytes each, in the layout of `MerkleTree.children()`. */
  toBuffer(): Buffer {
    const out = Buffer.allocUnsafe(this.count * 16);
    for (let i = 0; i < this.count * 4; i++) out.writeUInt32LE(this.words[i] as number, i * 4);
    return out;
  }
}

/**
 * The little-endian 32-bit word at `o` of `b`, unsigned. Byte arithmetic rather than `readUInt32LE`:
 * with V8's concurrent recompilation (Node 20) a Buffer method call in optimised code stays a generic
 * property load, 3x slower than these element reads (measured).
 */
function le32(b: Buffer, o: number): number {
  // As a signed 32-bit integer, which V8 keeps unboxed (an unsigned one of 2^31 or more would be a heap
  // number); the sums read it back with `>>> 0`.
  return (b[o] as number) | ((b[o + 1] as number) << 8) | ((b[o + 2] as number) << 16) | ((b[o + 3] as number) << 24);
}
