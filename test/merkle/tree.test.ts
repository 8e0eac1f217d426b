import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { segmentOf, TreeHasher } from '../../src/merkle/hash.js';
import { MerkleTree } from '../../src/merkle/tree.js';

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
            incremental.update(segment, it, 1);
            live.push([segment, it]);
            if (removeOne && live.length > 1) {
              const [s, i] = live.splice(Math.floor(live.length / 2), 1)[0] as [number, Buffer];
              incremental.update(s, i, -1);
            }
          }
          const scratch = new MerkleTree(8);
          for (const [s, i] of [...live].reverse()) scratch.update(s, i, 1);
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

  it('wraps around 2^128 and comes back to zero', () => {
    const t = new MerkleTree(4);
    const max = Buffer.alloc(16, 0xff);
    t.update(3, max, 1);
    t.update(3, Buffer.from([1, ...new Array<number>(15).fill(0)]), 1);
    expect(t.root().equals(Buffer.alloc(16))).toBe(true);
    t.update(3, max, -1);
    expect(t.root().equals(Buffer.from([1, ...new Array<number>(15).fill(0)]))).toBe(true);
  });

  it('refuses shapes it cannot hold', () => {
    expect(() => new MerkleTree(6)).toThrow(RangeError);
    expect(() => new MerkleTree(28)).toThrow(RangeError);
  });
});

describe('TreeHasher', () => {
  it('spreads keys over segments and depends on the secret, the version and the value', () => {
    const h = new TreeHasher('s1');
    const segments = new Set(Array.from({ length: 2000 }, (_, i) => segmentOf(h.keyHash(Buffer.from(`key:${i}`)), 16)));
    expect(segments.size).toBeGreaterThan(1900);
    for (const s of segments) expect(s).toBeLessThan(1 << 16);
    expect(segmentOf(0xffffffff, 16)).toBe(0xffff);
    expect(new TreeHasher('s2').keyHash(Buffer.from('k'))).not.toBe(h.keyHash(Buffer.from('k')));
    const v = { wall: 1, counter: 0, node: 'n' };
    const base = h.item(Buffer.from('k'), v, false, Buffer.from('x'));
    expect(base).toHaveLength(16);
    expect(h.item(Buffer.from('k'), v, false, Buffer.from('x')).equals(base)).toBe(true);
    expect(h.item(Buffer.from('k'), { ...v, counter: 1 }, false, Buffer.from('x')).equals(base)).toBe(false);
    expect(h.item(Buffer.from('k'), { ...v, node: 'm' }, false, Buffer.from('x')).equals(base)).toBe(false);
    expect(h.item(Buffer.from('k'), v, true, Buffer.from('x')).equals(base)).toBe(false);
    expect(h.item(Buffer.from('k'), v, false, Buffer.from('y')).equals(base)).toBe(false);
    expect(h.item(Buffer.from('kx'), v, false, Buffer.alloc(0)).equals(h.item(Buffer.from('k'), v, false, Buffer.from('x')))).toBe(false);
    expect(new TreeHasher('s2').item(Buffer.from('k'), v, false, Buffer.from('x')).equals(base)).toBe(false);
  });
});
