import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TreeHasher } from '../../src/merkle/hash.js';
import { LEAF_ENTRY, leafBitsFor, MerkleTree } from '../../src/merkle/tree.js';

const item = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b));

/** Sum mod 2^128 of 16-byte little-endian items, as a 16-byte buffer. */
function sum(items: Buffer[]): Buffer {
  let total = 0n;
  for (const i of items) total += BigInt('0x' + Buffer.from(i).reverse().toString('hex'));
  total %= 1n << 128n;
  return Buffer.from(total.toString(16).padStart(32, '0'), 'hex').reverse();
}

describe('MerkleTree', () => {
  it('after any sequence of adds and removes equals a tree built from scratch from what remains', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 255 }), item, fc.boolean()), { maxLength: 80 }),
        (ops) => {
          const incremental = new MerkleTree(8);
          const live: [number, Buffer][] = [];
          for (const [segment, it, removeOne] of ops) {
            incremental.updateBytes(segment, it, 0, 1);
            live.push([segment, it]);
            if (removeOne && live.length > 1) {
              const [s, i] = live.splice(Math.floor(live.length / 2), 1)[0] as [number, Buffer];
              incremental.updateBytes(s, i, 0, -1);
            }
          }
          const scratch = new MerkleTree(8);
          for (const [s, i] of [...live].reverse()) scratch.updateBytes(s, i, 0, 1);
          expect(incremental.root().equals(scratch.root())).toBe(true);
          expect(incremental.root().equals(sum(live.map(([, i]) => i)))).toBe(true);
          for (let d = 0; d < incremental.depth; d++) {
            for (let n = 0; n < 16 ** d; n++) {
              const kids = incremental.children(d, n);
              const parts = Array.from({ length: 16 }, (_, c) => kids.subarray(c * 16, c * 16 + 16));
              expect(incremental.node(d, n).equals(sum(parts))).toBe(true);
              expect(kids.equals(scratch.children(d, n))).toBe(true);
            }
          }
        },
      ),
      { numRuns: 60, seed: 7 },
    );
  });

  it('replacing an item equals removing it and adding the new one', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 15 }), item, item), { maxLength: 40 }), (swaps) => {
        const one = new MerkleTree(4);
        const two = new MerkleTree(4);
        for (const [segment, from, to] of swaps) {
          one.updateBytes(segment, from, 0, 1);
          two.updateBytes(segment, from, 0, 1);
          // At an offset, as the store passes records.
          one.replaceBytes(segment, Buffer.concat([Buffer.alloc(3), from]), 3, Buffer.concat([Buffer.alloc(5), to]), 5);
          two.updateBytes(segment, from, 0, -1);
          two.updateBytes(segment, to, 0, 1);
        }
        for (let n = 0; n < 16; n++) expect(one.node(1, n).equals(two.node(1, n))).toBe(true);
        expect(one.root().equals(two.root())).toBe(true);
      }),
      { numRuns: 200, seed: 3 },
    );
  });

  it('wraps around 2^128 and comes back to zero', () => {
    const t = new MerkleTree(4);
    const max = Buffer.alloc(16, 0xff);
    t.updateBytes(3, max, 0, 1);
    t.updateBytes(3, Buffer.from([1, ...new Array<number>(15).fill(0)]), 0, 1);
    expect(t.root().equals(Buffer.alloc(16))).toBe(true);
    t.updateBytes(3, max, 0, -1);
    expect(t.root().equals(Buffer.from([1, ...new Array<number>(15).fill(0)]))).toBe(true);
  });

  it('refuses shapes it cannot hold', () => {
    expect(() => new MerkleTree(6)).toThrow(RangeError);
    expect(() => new MerkleTree(28)).toThrow(RangeError);
    expect(() => new MerkleTree(8, 4)).toThrow(RangeError);
    expect(() => new MerkleTree(8, 10)).toThrow(RangeError);
    expect(() => new MerkleTree(24, 28)).toThrow(RangeError);
  });

  it('is kept one level deeper for a store of more than 4 records a segment, up to 20 bits', () => {
    expect(leafBitsFor(16, 0)).toBe(16);
    expect(leafBitsFor(16, 4 * 65_536)).toBe(16);
    expect(leafBitsFor(16, 4 * 65_536 + 1)).toBe(20);
    expect(leafBitsFor(12, 4 * 4096 + 1)).toBe(16);
    expect(leafBitsFor(20, 10_000_000)).toBe(20);
    expect(leafBitsFor(24, 1e9)).toBe(24);
  });

  it('saves its non-zero leaves, in order, as a tree with a path added per leaf takes them back', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 2 ** 32 - 1 }), item), { maxLength: 60 }), fc.constantFrom(4, 8), (items, extra) => {
        const tree = new MerkleTree(4, 4 + extra);
        for (const [hi, it] of items) tree.updateBytes(tree.segmentOf(hi), it, 0, 1);
        const saved = tree.encodeLeaves();
        const loaded = new MerkleTree(4, 4 + extra);
        let last = -1;
        for (let o = 0; o < saved.length; o += LEAF_ENTRY) {
          const leaf = saved.readUInt32LE(o);
          expect(leaf).toBeGreaterThan(last);
          last = leaf;
          loaded.updateBytes(leaf, saved, o + 4, 1);
        }
        for (let d = 0; d < tree.depth; d++) for (let i = 0; i < 16 ** d; i++) expect(loaded.children(d, i)).toEqual(tree.children(d, i));
        expect(loaded.encodeLeaves()).toEqual(saved);
      }),
    );
  });

  it('keeps a level below the segments when asked: the same sums, one level deeper', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 2 ** 32 - 1 }), item), { maxLength: 60 }), (items) => {
        const plain = new MerkleTree(4);
        const deeper = new MerkleTree(4, 8);
        expect(deeper.bits).toBe(4);
        expect(deeper.depth).toBe(2);
        for (const [hi, it] of items) {
          plain.updateBytes(plain.segmentOf(hi), it, 0, 1);
          deeper.updateBytes(deeper.segmentOf(hi), it, 0, 1);
        }
        expect(deeper.root()).toEqual(plain.root());
        expect(deeper.children(0, 0)).toEqual(plain.children(0, 0));
        // A segment's 16 children: the sums of its items by the next 4 bits of their key hashes.
        for (let s = 0; s < 16; s++) {
          const under = items.filter(([hi]) => hi >>> 28 === s);
          for (let c = 0; c < 16; c++) {
            const mine = deeper.children(1, s).subarray(c * 16, c * 16 + 16);
            expect(mine).toEqual(sum(under.filter(([hi]) => ((hi >>> 24) & 15) === c).map(([, it]) => it)));
          }
        }
      }),
    );
  });
});

/** SHA-256(len(secret), secret, 'i', len(key), key, wall, counter, tombstone 0, len(node), node, value), 16 bytes. */
function reference(secret: string, key: Buffer, v: { wall: number; counter: number; node: string }, value: Buffer): string {
  const len = (n: number, bytes: number): Buffer => {
    const b = Buffer.alloc(bytes);
    b.writeUIntBE(n, 0, bytes);
    return b;
  };
  return createHash('sha256')
    .update(len(secret.length, 4))
    .update(secret)
    .update('i')
    .update(len(key.length, 4))
    .update(key)
    .update(len(v.wall, 6))
    .update(len(v.counter, 2))
    .update(Buffer.from([0, v.node.length]))
    .update(v.node)
    .update(value)
    .digest()
    .toString('latin1', 0, 16);
}

describe('TreeHasher', () => {
  it('spreads keys over segments and depends on the secret, the version and the value', () => {
    const h = new TreeHasher('s1');
    const segments = new Set(Array.from({ length: 2000 }, (_, i) => h.keyHash(Buffer.from(`key:${i}`)).hi >>> 16));
    expect(segments.size).toBeGreaterThan(1900);
    expect(new TreeHasher('s2').keyHash(Buffer.from('k'))).not.toEqual(h.keyHash(Buffer.from('k')));
    expect(h.keyHash(Buffer.from('k'))).toEqual(new TreeHasher('s1').keyHash(Buffer.from('k')));
    expect(h.secretFingerprint).not.toBe(new TreeHasher('s2').secretFingerprint);
    const v = { wall: 1, counter: 0, node: 'n' };
    const base = h.item(Buffer.from('k'), v, 0, Buffer.from('x'));
    expect(base).toHaveLength(16);
    expect(h.item(Buffer.from('k'), v, 0, Buffer.from('x'))).toBe(base);
    expect(h.item(Buffer.from('k'), { ...v, counter: 1 }, 0, Buffer.from('x'))).not.toBe(base);
    expect(h.item(Buffer.from('k'), { ...v, node: 'm' }, 0, Buffer.from('x'))).not.toBe(base);
    expect(h.item(Buffer.from('k'), v, 1, Buffer.from('x'))).not.toBe(base);
    expect(h.item(Buffer.from('k'), v, 0, Buffer.from('y'))).not.toBe(base);
    expect(h.item(Buffer.from('kx'), v, 0, Buffer.alloc(0))).not.toBe(h.item(Buffer.from('k'), v, 0, Buffer.from('x')));
    // Small values are hashed from a scratch buffer, large ones streamed: both are the documented input.
    for (const value of [Buffer.from('x'), Buffer.alloc(20_000, 7)]) {
      expect(h.item(Buffer.from('k'), v, 0, value)).toBe(reference('s1', Buffer.from('k'), v, value));
    }
    expect(new TreeHasher('s2').item(Buffer.from('k'), v, 0, Buffer.from('x'))).not.toBe(base);
  });
});
