import { describe, expect, it, vi } from 'vitest';
import { tempDatabases } from './fixture.js';
import type { Databases } from '../../src/store/databases.js';
import { KeyHashIndex, type StoredEntry } from '../../src/store/keyhash.js';
import { PendingWrite } from '../../src/store/overlay.js';
import { encodeKeyedRecord, encodeRecord, indexKey, type StoredRecord } from '../../src/store/record.js';

const EMPTY = Buffer.alloc(0);
const b = (s: string): Buffer => Buffer.from(s);


let version = 1;

/** A record whose key hash is (hi, lo): the tests choose where each key falls. */
function fields(hi: number, lo: number, value = 'v'): StoredRecord {
  return { wall: 1_700_000_000_000 + version++, counter: 0, node: 'n1', flags: 0, body: b(value), item: '\0'.repeat(16), keyHash: { hi, lo } };
}

/** LMDB's index, and the store's records and pending writes as the index reads them (the store's readAt). */
interface Fixture {
  readonly dbs: Databases;
  readonly keyHashes: KeyHashIndex;
  /** Records in LMDB, by latin1 key. */
  readonly stored: Map<string, Buffer>;
  /** Pending writes of keys not in LMDB's index yet. */
  readonly unindexed: Map<string, PendingWrite>;
  /** What `recordCount()` answers. */
  count: number;
  /** A record in LMDB with its index entry. */
  store(key: string, f: StoredRecord): Buffer;
  /** A pending write of a key that the index lacks. */
  pend(key: string, f: StoredRecord): Buffer;
}

function fixture(readAt?: (fx: Fixture, k: string) => Buffer | undefined): Fixture {
  const { dbs } = tempDatabases('keyhash');
  const fx: Fixture = {
    dbs,
    stored: new Map(),
    unindexed: new Map(),
    count: 0,
    store(key, f) {
      const rec = encodeRecord(f);
      dbs.index.putSync(indexKey(rec, b(key)), EMPTY);
      fx.stored.set(key, rec);
      fx.count++;
      return rec;
    },
    pend(key, f) {
      const p = new PendingWrite(key, encodeKeyedRecord(b(key), f), false);
      fx.unindexed.set(key, p);
      fx.count++;
      return p.rec;
    },
    keyHashes: new KeyHashIndex(dbs.index, {
      readAt: (_key, k) => (readAt !== undefined ? readAt(fx, k) : (fx.unindexed.get(k)?.rec ?? fx.stored.get(k))),
      readDurable: (key) => fx.stored.get(key.toString('latin1')),
      // A custom readAt stands for pending writes over stored keys.
      pendingCount: () => (readAt !== undefined ? 1 : fx.unindexed.size),
      unindexed: () => fx.unindexed.values(),
      unindexedCount: () => fx.unindexed.size,
      recordCount: () => fx.count,
    }),
  };
  return fx;
}

const keys = (entries: StoredEntry[]): string[] => entries.map((e) => e.key.toString('latin1'));

/** Depth-1 nodes are the top 4 bits of the key hash. */
function standard(fx: Fixture): Record<string, Buffer> {
  return {
    e: fx.store('e', fields(0x0000_0000, 0)),
    a: fx.store('a', fields(0x1000_0000, 0)),
    b: fx.store('b', fields(0x1fff_ffff, 0xffff_ffff)),
    c: fx.store('c', fields(0x2000_0000, 5)),
    x: fx.store('x', fields(0x2100_0000, 0)),
    d: fx.store('d', fields(0xf000_0001, 0)),
  };
}

describe('KeyHashIndex.recordsUnder', () => {
  it("lists the records under a tree node, in key-hash order, each with its record", () => {
    const fx = fixture();
    const recs = standard(fx);
    expect(keys(fx.keyHashes.recordsUnder(0, 0))).toEqual(['e', 'a', 'b', 'c', 'x', 'd']);
    expect(keys(fx.keyHashes.recordsUnder(1, 0))).toEqual(['e']);
    expect(keys(fx.keyHashes.recordsUnder(1, 1))).toEqual(['a', 'b']);
    expect(keys(fx.keyHashes.recordsUnder(1, 2))).toEqual(['c', 'x']);
    expect(keys(fx.keyHashes.recordsUnder(1, 3))).toEqual([]);
    expect(keys(fx.keyHashes.recordsUnder(1, 15))).toEqual(['d']);
    expect(keys(fx.keyHashes.recordsUnder(2, 0x20))).toEqual(['c']);
    expect(keys(fx.keyHashes.recordsUnder(2, 0x21))).toEqual(['x']);
    expect(keys(fx.keyHashes.recordsUnder(8, 0x1fff_ffff))).toEqual(['b']);
    expect(keys(fx.keyHashes.recordsUnder(8, 0xffff_ffff))).toEqual([]);
    expect(fx.keyHashes.recordsUnder(1, 1)).toEqual([
      { key: b('a'), rec: recs.a },
      { key: b('b'), rec: recs.b },
    ]);
  });

  it("copies records out of the source's buffer, which the next read reuses", () => {
    const scratch = Buffer.alloc(256);
    const fx = fixture((f, k) => {
      const rec = f.stored.get(k);
      if (rec === undefined) return undefined;
      rec.copy(scratch);
      return scratch.subarray(0, rec.length);
    });
    const recs = standard(fx);
    expect(fx.keyHashes.recordsUnder(1, 1).map((e) => e.rec)).toEqual([recs.a, recs.b]);
  });

  it('skips an index entry whose record is gone', () => {
    const fx = fixture();
    standard(fx);
    fx.stored.delete('a');
    expect(keys(fx.keyHashes.recordsUnder(1, 1))).toEqual(['b']);
  });

  it('adds the pending writes of keys the index lacks, and lists a key in both only once', () => {
    const fx = fixture();
    standard(fx);
    const p = fx.pend('p', fields(0x1234_5678, 0));
    fx.pend('q', fields(0x3000_0000, 0));
    // Its batch just committed: in the index, and still among the unindexed writes.
    const a2 = fx.pend('a', fields(0x1000_0000, 0, 'newer'));
    const under1 = fx.keyHashes.recordsUnder(1, 1);
    expect(under1).toEqual([
      { key: b('a'), rec: a2 },
      { key: b('b'), rec: fx.stored.get('b') },
      { key: b('p'), rec: p },
    ]);
    expect(keys(fx.keyHashes.recordsUnder(1, 3))).toEqual(['q']);
    expect(keys(fx.keyHashes.recordsUnder(0, 0)).sort()).toEqual(['a', 'b', 'c', 'd', 'e', 'p', 'q', 'x']);
    expect(keys(fx.keyHashes.recordsUnder(8, 0x1234_5678))).toEqual(['p']);
    expect(keys(fx.keyHashes.recordsUnder(8, 0x1234_5679))).toEqual([]);
  });
});

describe('KeyHashIndex.recordsWithKeyHash', () => {
  const hash = (hi: number, lo: number): Buffer => {
    const h = Buffer.alloc(8);
    h.writeUInt32BE(hi, 0);
    h.writeUInt32BE(lo, 4);
    return h;
  };

  it('lists the records of exactly one key hash, colliding keys included', () => {
    const fx = fixture();
    standard(fx);
    fx.store('b2', fields(0x1fff_ffff, 0xffff_ffff));
    fx.store('b-1', fields(0x1fff_ffff, 0xffff_fffe));
    // Ends in 0xff: the end of its range carries into the bytes before, and stops short of c's hash.
    const h = hash(0x1fff_ffff, 0xffff_ffff);
    expect(keys(fx.keyHashes.recordsWithKeyHash(h))).toEqual(['b', 'b2']);
    expect(h).toEqual(hash(0x1fff_ffff, 0xffff_ffff));
    expect(keys(fx.keyHashes.recordsWithKeyHash(hash(0x2000_0000, 5)))).toEqual(['c']);
    expect(keys(fx.keyHashes.recordsWithKeyHash(hash(0x2000_0000, 4)))).toEqual([]);
  });

  it('reaches the last key hash of all, which has no end to its range', () => {
    const fx = fixture();
    standard(fx);
    fx.store('z', fields(0xffff_ffff, 0xffff_ffff));
    expect(keys(fx.keyHashes.recordsWithKeyHash(hash(0xffff_ffff, 0xffff_ffff)))).toEqual(['z']);
  });

  it('adds pending writes with that whole key hash, not those sharing only its top bits', () => {
    const fx = fixture();
    standard(fx);
    fx.pend('same', fields(0x2000_0000, 5));
    fx.pend('near', fields(0x2000_0000, 6));
    const c2 = fx.pend('c', fields(0x2000_0000, 5, 'newer'));
    const found = fx.keyHashes.recordsWithKeyHash(hash(0x2000_0000, 5));
    expect(keys(found)).toEqual(['c', 'same']);
    expect(found[0]?.rec).toEqual(c2);
  });
});

describe('KeyHashIndex.recordsUnderEach', () => {
  /** Records in nodes 1, 2, 3 and 5 of depth 1, pending ones among them. */
  function spread(fx: Fixture): void {
    standard(fx);
    fx.pend('p', fields(0x1234_5678, 0));
    fx.pend('q', fields(0x3000_0000, 0));
    fx.pend('r', fields(0x5000_0000, 0));
  }

  const expected = [['c', 'x'], ['a', 'b', 'p'], ['q'], [], ['d']];

  it('answers like recordsUnder for each node, in the order given, with one scan over a sparse span', () => {
    const fx = fixture();
    spread(fx);
    const scans = vi.spyOn(fx.dbs.index, 'getKeys');
    // Few records per node: one range scan over nodes 1..15, skipping the nodes not asked for.
    const each = fx.keyHashes.recordsUnderEach(1, [2, 1, 3, 4, 15]);
    expect(each.map(keys)).toEqual(expected);
    expect(scans).toHaveBeenCalledTimes(1);
    expect(each).toEqual([2, 1, 3, 4, 15].map((i) => fx.keyHashes.recordsUnder(1, i)));
  });

  it('scans node by node when the span between them holds too many records', () => {
    const fx = fixture();
    spread(fx);
    fx.count = 1_000_000;
    const scans = vi.spyOn(fx.dbs.index, 'getKeys');
    expect(fx.keyHashes.recordsUnderEach(1, [2, 1, 3, 4, 15]).map(keys)).toEqual(expected);
    expect(scans).toHaveBeenCalledTimes(5);
  });

  it('answers nothing for no nodes, and everything for the root', () => {
    const fx = fixture();
    spread(fx);
    expect(fx.keyHashes.recordsUnderEach(1, [])).toEqual([]);
    expect(fx.keyHashes.recordsUnderEach(0, [0]).map((e) => keys(e).sort())).toEqual([['a', 'b', 'c', 'd', 'e', 'p', 'q', 'r', 'x']]);
  });
});
