import { afterEach, describe, expect, it, vi } from 'vitest';
import { join } from 'node:path';
import { defer, silent, tempDatabases } from './fixture.js';
import type { Databases } from '../../src/store/databases.js';
import { Overlay, PendingWrite } from '../../src/store/overlay.js';
import { decodeRecord, encodeKeyedRecord, encodeRecord, indexKey, type StoredRecord } from '../../src/store/record.js';
import { listSegments, readSegment, segmentName, WriteAheadLog } from '../../src/store/wal.js';

const EMPTY = Buffer.alloc(0);
const b = (s: string): Buffer => Buffer.from(s);
/** The overlay's own caps (overlay.ts). */
const MAX_PENDING_BYTES = 64 * 1024 * 1024;
const APPLY_DELAY_MS = 200;

afterEach(() => {
  vi.restoreAllMocks();
});

interface Fixture {
  readonly dir: string;
  readonly dbs: Databases;
  readonly log: WriteAheadLog;
  readonly overlay: Overlay;
}

/** An overlay over a real log and LMDB in one temporary directory, as the store wires them. */
function fixture(): Fixture {
  const { dir, dbs } = tempDatabases('overlay');
  const log = new WriteAheadLog({ dir, mode: 'periodic', periodMs: 1000, logger: silent, firstSeq: 0 });
  defer(() => log.close(false));
  const overlay = new Overlay({ db: dbs.db, index: dbs.index, log, logger: silent, flush: () => log.flush() });
  defer(async () => {
    overlay.stop();
    await overlay.settle();
  });
  return { dir, dbs, log, overlay };
}

let hash = 1;
/** Each key's hash, fixed for its life as the store keeps it. */
const hashes = new Map<string, number>();

function fields(key: string, value: string | Buffer): StoredRecord {
  let hi = hashes.get(key);
  if (hi === undefined) hashes.set(key, (hi = Math.imul(hash++, 0x9e37_79b1) >>> 0));
  const body = typeof value === 'string' ? b(value) : value;
  return { wall: 1_700_000_000_000 + hash++, counter: 0, node: 'n1', flags: 0, body, item: '\0'.repeat(16), keyHash: { hi, lo: 0 } };
}

/** What the store's write path does with a new write: append it to the log, then add it. */
function write(fx: Fixture, key: string, value: string | Buffer, inLmdb = fx.dbs.db.getBinary(b(key)) !== undefined): PendingWrite {
  const e = new PendingWrite(key, encodeKeyedRecord(b(key), fields(key, value)), true);
  e.logEnd = fx.log.append(e.body);
  fx.overlay.add(e, inLmdb);
  return e;
}

/** The index entries of `key`. */
function indexed(fx: Fixture, key: string): Buffer[] {
  return [...fx.dbs.index.getKeys({})].filter((ik) => ik.subarray(8).equals(b(key)));
}

const segments = (fx: Fixture): number[] => listSegments(fx.dir).map((s) => s.seq);

describe('Overlay: pending writes', () => {
  it('holds a write, readable at once, until LMDB has it', async () => {
    const fx = fixture();
    const { overlay } = fx;
    expect(overlay.lagMs).toBe(0);
    const e = write(fx, 'a', '1');
    expect(overlay.get('a')).toBe(e);
    expect(overlay.size).toBe(1);
    expect([...overlay.values()]).toEqual([e]);
    expect(overlay.pendingBytes).toBe(e.body.length);
    expect(e.key).toEqual(b('a'));
    expect(decodeRecord(e.rec).body).toEqual(b('1'));
    expect({ batch: e.batch, newKey: e.newKey, prev: e.prev, next: e.next }).toEqual({ batch: 0, newKey: true, prev: undefined, next: undefined });
    expect(fx.dbs.db.getBinary(b('a'))).toBeUndefined();

    await overlay.settle();
    expect(fx.dbs.db.getBinary(b('a'))).toEqual(e.rec);
    expect(indexed(fx, 'a')).toEqual([indexKey(e.rec, b('a'))]);
    expect({ size: overlay.size, bytes: overlay.pendingBytes, lag: overlay.lagMs, got: overlay.get('a') }).toEqual({ size: 0, bytes: 0, lag: 0, got: undefined });
    expect(overlay.batchesApplied).toBe(1);
  });

  it('links a rewrite to the write it replaced; undo() restores that one, and takes it out of the batch', async () => {
    const fx = fixture();
    const { overlay } = fx;
    const e1 = write(fx, 'a', '1');
    const e2 = write(fx, 'a', '2');
    expect(e1.next).toBe(e2);
    expect(e2.prev).toBe(e1);
    expect(overlay.get('a')).toBe(e2);
    expect(overlay.size).toBe(1);
    expect(overlay.pendingBytes).toBe(e1.body.length + e2.body.length);

    overlay.undo(e2);
    expect(overlay.get('a')).toBe(e1);
    expect(e1.next).toBeUndefined();
    expect(overlay.pendingBytes).toBe(e1.body.length);
    expect([...overlay.unindexedValues()]).toEqual([e1]);
    overlay.undo(e1);
    expect({ size: overlay.size, bytes: overlay.pendingBytes, unindexed: overlay.unindexedCount }).toEqual({ size: 0, bytes: 0, unindexed: 0 });

    // Nothing is left to apply.
    await overlay.settle();
    expect(overlay.batchesApplied).toBe(0);
    expect(fx.dbs.db.getBinary(b('a'))).toBeUndefined();
  });

  it("tracks the keys LMDB's index lacks, through rewrites and undos, until their batch is in LMDB", async () => {
    const fx = fixture();
    const { overlay, dbs } = fx;
    const old = encodeRecord(fields('old', '0'));
    dbs.db.putSync(b('old'), old);
    dbs.index.putSync(indexKey(old, b('old')), EMPTY);
    const o = write(fx, 'old', '1');
    const n1 = write(fx, 'new', '1');
    expect([o.newKey, n1.newKey]).toEqual([false, true]);
    expect([...overlay.unindexedValues()]).toEqual([n1]);

    // A rewrite in the same batch takes over the index entry.
    const n2 = write(fx, 'new', '2');
    expect(n2.newKey).toBe(true);
    expect([...overlay.unindexedValues()]).toEqual([n2]);
    overlay.undo(n2);
    expect([...overlay.unindexedValues()]).toEqual([n1]);
    const n3 = write(fx, 'new', '3');
    expect(overlay.unindexedCount).toBe(1);

    await overlay.settle();
    expect(overlay.unindexedCount).toBe(0);
    expect(indexed(fx, 'new')).toEqual([indexKey(n3.rec, b('new'))]);
    expect(indexed(fx, 'old')).toHaveLength(1);
    expect(dbs.db.getBinary(b('new'))).toEqual(n3.rec);
  });
});

describe('Overlay: batches into LMDB', () => {
  it('puts a key written several times in one batch once, with its newest record, and indexes it once', async () => {
    const fx = fixture();
    const { overlay, dbs } = fx;
    const puts = vi.spyOn(dbs.db, 'put');
    const indexPuts = vi.spyOn(dbs.index, 'put');
    write(fx, 'a', '1');
    write(fx, 'a', '2');
    const a3 = write(fx, 'a', '3');
    const c = write(fx, 'c', '1');
    await overlay.settle();
    expect(puts.mock.calls.map(([key, value]) => [String(key), value])).toEqual([
      ['a', a3.rec],
      ['c', c.rec],
    ]);
    // The index's keys go in key-hash order (the index's own), not the batch's.
    const byHash = (keys: Buffer[]): Buffer[] => [...keys].sort((x, y) => Buffer.compare(x, y));
    expect(byHash(indexPuts.mock.calls.map(([key]) => key))).toEqual(byHash([indexKey(a3.rec, b('a')), indexKey(c.rec, b('c'))]));
    expect(dbs.db.getBinary(b('a'))).toEqual(a3.rec);
    expect({ size: overlay.size, bytes: overlay.pendingBytes, batches: overlay.batchesApplied }).toEqual({ size: 0, bytes: 0, batches: 1 });
  });

  it('keeps a key rewritten while its batch is on its way pending, under the newer write, until the next batch', async () => {
    const fx = fixture();
    const { overlay, dbs, log } = fx;
    const e1 = write(fx, 'a', '1');
    // Hands batch 0 to LMDB at once (settle() applies before it first waits).
    const settled = overlay.settle();
    expect(log.segment).toBe(1);
    const e2 = write(fx, 'a', '2');
    expect({ batch: e2.batch, newKey: e2.newKey, prev: e2.prev }).toEqual({ batch: 1, newKey: false, prev: e1 });
    // Its key's index entry is still on its way with batch 0.
    expect([...overlay.unindexedValues()]).toEqual([e2]);

    const atCommit: unknown[] = [];
    const remove = log.remove.bind(log);
    vi.spyOn(log, 'remove').mockImplementation((seq) => {
      atCommit.push({ seq, pending: overlay.get('a') === e2, prev: e2.prev, unindexed: overlay.unindexedCount, stored: dbs.db.getBinary(b('a'))?.toString('latin1') });
      remove(seq);
    });
    const puts = vi.spyOn(dbs.index, 'put');
    await settled;
    expect(atCommit).toEqual([
      { seq: 0, pending: true, prev: undefined, unindexed: 0, stored: e1.rec.toString('latin1') },
      { seq: 1, pending: false, prev: undefined, unindexed: 0, stored: e2.rec.toString('latin1') },
    ]);
    // The second batch does not index the key again.
    expect(puts).not.toHaveBeenCalled();
    expect(indexed(fx, 'a')).toHaveLength(1);
    expect(overlay.size).toBe(0);
    expect(overlay.batchesApplied).toBe(2);
  });

  it("writes a batch's log segment, and deletes it once LMDB holds its writes", async () => {
    const fx = fixture();
    const { overlay, log } = fx;
    const a = write(fx, 'a', '1');
    const c = write(fx, 'c', '1');
    expect(segments(fx)).toEqual([0]);
    const settled = overlay.settle();
    // Flushed and rotated: segment 0 holds the batch, segment 1 takes new writes.
    expect(segments(fx)).toEqual([0, 1]);
    expect(readSegment(join(fx.dir, segmentName(0)), 1 << 20, () => {})).toEqual([a.body, c.body]);
    expect(log.segment).toBe(1);
    await settled;
    await vi.waitFor(() => expect(segments(fx)).toEqual([1]), { timeout: 2000, interval: 5 });
  });

  it('applies a batch on its own shortly after its first write, and not while stopped', async () => {
    const fx = fixture();
    const { overlay, dbs } = fx;
    const started = Date.now();
    const e = write(fx, 'a', '1');
    await new Promise((resolve) => setImmediate(resolve));
    expect(dbs.db.getBinary(b('a'))).toBeUndefined();
    await vi.waitFor(() => expect(dbs.db.getBinary(b('a'))).toEqual(e.rec), { timeout: 3000, interval: 5 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(APPLY_DELAY_MS - 5);
    await vi.waitFor(() => expect(overlay.size).toBe(0), { timeout: 2000, interval: 5 });

    overlay.stop();
    write(fx, 'c', '1');
    await new Promise((resolve) => setTimeout(resolve, APPLY_DELAY_MS + 100));
    expect(dbs.db.getBinary(b('c'))).toBeUndefined();
    expect(overlay.lagMs).toBeGreaterThanOrEqual(APPLY_DELAY_MS);
    await overlay.settle();
    expect(dbs.db.getBinary(b('c'))).toBeDefined();
  });

  it('retries a commit that failed, keeping the writes pending and their log segment meanwhile', async () => {
    const fx = fixture();
    const { overlay, dbs } = fx;
    vi.spyOn(dbs.db, 'put').mockImplementationOnce(() => Promise.reject(new Error('MDB_MAP_FULL: Environment mapsize limit reached')));
    const e = write(fx, 'a', '1');
    const settled = overlay.settle();
    await vi.waitFor(() => expect(overlay.applyFailures).toBe(1), { timeout: 2000, interval: 5 });
    expect(overlay.get('a')).toBe(e);
    expect(overlay.batchesApplied).toBe(0);
    expect(segments(fx)).toEqual([0, 1]);
    await settled;
    expect(dbs.db.getBinary(b('a'))).toEqual(e.rec);
    expect({ failures: overlay.applyFailures, batches: overlay.batchesApplied, size: overlay.size }).toEqual({ failures: 1, batches: 1, size: 0 });
    await vi.waitFor(() => expect(segments(fx)).toEqual([1]), { timeout: 2000, interval: 5 });
  });
});

describe('Overlay: backpressure', () => {
  it('is over its cap past 64 MiB pending, and drained() resolves once LMDB has caught up', async () => {
    const fx = fixture();
    const { overlay, dbs } = fx;
    const value = Buffer.alloc(2 * 1024 * 1024 - 1024, 0x61);
    let n = 0;
    while (!overlay.overCap) {
      expect(overlay.pendingBytes).toBeLessThanOrEqual(MAX_PENDING_BYTES);
      // Not appended to the log: the caps count what the overlay holds, and 64 MiB more on disk only slows the test.
      const key = `k${n++}`;
      overlay.add(new PendingWrite(key, encodeKeyedRecord(b(key), fields(key, value)), true), false);
      expect(n).toBeLessThan(40);
    }
    expect(overlay.pendingBytes).toBeGreaterThan(MAX_PENDING_BYTES);
    let drained = false;
    const waiting = overlay.drained().then(() => (drained = true));
    await Promise.resolve();
    expect(drained).toBe(false);
    // Past half its cap the batch goes to LMDB without waiting for the delay: the log has rotated.
    await new Promise((resolve) => setImmediate(resolve));
    expect(fx.log.segment).toBe(1);
    const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('drained() did not resolve')), 4000).unref());
    await Promise.race([waiting, timeout]);
    expect(overlay.overCap).toBe(false);
    expect(overlay.pendingBytes).toBe(0);
    expect(dbs.db.getBinary(b(`k${n - 1}`))?.length).toBeGreaterThan(value.length);
  });
});

describe('Overlay: the index in its own order', () => {
  it('puts a batch\'s new index keys in key-hash order, whatever order the keys were written in', async () => {
    const fx = fixture();
    const indexPuts = vi.spyOn(fx.dbs.index, 'put');
    for (let i = 0; i < 500; i++) write(fx, `key:${i}`, 'v');
    await fx.overlay.settle();
    const his = indexPuts.mock.calls.map(([key]) => key.readUInt32BE(0));
    expect(his).toHaveLength(500);
    // By the top bits of the key hash (9 bits for 500 keys): in order bucket by bucket.
    const buckets = his.map((hi) => hi >>> 23);
    expect(buckets).toEqual([...buckets].sort((x, y) => x - y));
  });
});
