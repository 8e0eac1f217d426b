import { cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it, vi } from 'vitest';
import { defer, tempDatabases } from './fixture.js';
import { compareHlc, type Hlc } from '../../src/hlc.js';
import { openDatabases } from '../../src/store/databases.js';
import { increment, setWithExpiry } from '../../src/store/operations.js';
import { encodeRecord, indexKey } from '../../src/store/record.js';
import { addMembers, countMembers, removeMembers } from '../../src/store/setops.js';
import { decodeEntries, encodeEntries, saveSnapshot, takeSnapshot, type Snapshot } from '../../src/store/snapshot.js';
import { plainState } from '../../src/store/state.js';
import { Store } from '../../src/store/store.js';
import type { StoreOptions } from '../../src/store/types.js';

const b = (s: string): Buffer => Buffer.from(s);

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'merkle-kv-snapshot-'));
  defer(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A store on `path` whose start-up log lines are kept (the `msg` and `why` of each). */
function openStore(path: string, opts: Partial<StoreOptions> = {}): { store: Store; log: string[] } {
  const log: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => log.push(line) });
  const store = Store.open({ path, nodeId: 'n1', maxClockSkewMs: 60_000, tombstoneGraceSeconds: 86_400, logger, ...opts });
  defer(() => store.close());
  return { store, log };
}

const LOADED = 'loaded from the snapshot of the last clean stop';
const NOT_USED = 'snapshot of the last clean stop not used';

/** Why the start-up did not use a snapshot it found, if it found one. */
function whyNotUsed(log: string[]): string | undefined {
  const line = log.find((l) => l.includes(NOT_USED));
  return line === undefined ? undefined : (JSON.parse(line) as { why: string }).why;
}

/** What the tally shows: the root, DBSIZE's counts, the sets' cardinalities. */
function figures(store: Store): Record<string, unknown> {
  const { keys, tombstones, expiring } = store.figures();
  const card = (k: string): unknown => {
    const r = countMembers(store, b(k));
    return r === 'wrongtype' ? r : r.value;
  };
  return { root: store.rootHash().toString('hex'), keys, tombstones, expiring, sets: [card('s'), card('t'), card('empty')] };
}

/** What a crash leaves (as recovery.test.ts takes it): a copy of the directory while the store runs. */
function crashCopy(path: string): string {
  const copy = join(tempDir(), 'crashed');
  cpSync(path, copy, { recursive: true });
  return copy;
}

/** A copy of a stopped store's directory without its snapshot: opening it counts every record. */
async function scanCopy(path: string): Promise<string> {
  const copy = join(tempDir(), 'scanned');
  cpSync(path, copy, { recursive: true });
  const dbs = openDatabases(copy);
  const keys = [...dbs.snapshot.getKeys({})];
  dbs.root.transactionSync(() => keys.forEach((k) => void dbs.snapshot.remove(k)));
  await dbs.root.close();
  return copy;
}

/** How many entries the snapshot database of a stopped store's directory holds. */
async function snapshotKeys(path: string): Promise<number> {
  const dbs = openDatabases(path);
  const n = [...dbs.snapshot.getKeys({})].length;
  await dbs.root.close();
  return n;
}

/**
 * Writes of every kind: values, tombstones, a counter, a key that expires in an hour (and one at `soon`,
 * if given), sets (one emptied), a remote write from `ahead`.
 */
function fill(store: Store, ahead: Hlc, soon?: number): void {
  for (let i = 0; i < 300; i++) void store.set(b(`k${i}`), b(`v${i}`));
  for (let i = 0; i < 300; i += 7) void store.delete(b(`k${i}`));
  increment(store, b('counter'), 5n);
  void setWithExpiry(store, b('later'), b('x'), Date.now() + 3_600_000);
  if (soon !== undefined) void setWithExpiry(store, b('soon'), b('x'), soon);
  addMembers(store, b('s'), [b('a'), b('b'), b('c')]);
  removeMembers(store, b('s'), [b('b')]);
  addMembers(store, b('t'), [b('only')]);
  addMembers(store, b('empty'), [b('gone')]);
  removeMembers(store, b('empty'), [b('gone')]);
  void store.applyRemote(b('remote'), plainState({ ...ahead, node: 'n2' }, b('from ahead')));
}

describe('start-up from the snapshot of a clean stop', () => {
  it('gives the root, counts, cardinalities and clock floor a full scan gives; the snapshot is gone once used', async () => {
    // The clock stands still until the test moves it: 'soon' expires after the restart, not before.
    const now = Date.now();
    vi.useFakeTimers({ toFake: ['Date'] });
    defer(() => void vi.useRealTimers());
    vi.setSystemTime(now);
    const path = join(tempDir(), 'db');
    const ahead = { wall: now + 30_000, counter: 3 };
    const first = openStore(path).store;
    fill(first, ahead, now + 1000);
    const before = figures(first);
    const lastIssued = first.newVersion();
    await first.close();
    expect(await snapshotKeys(path)).toBeGreaterThan(1);

    const scanned = await scanCopy(path);
    const { store, log } = openStore(path);
    expect(log.some((l) => l.includes(LOADED))).toBe(true);
    // Deleted by the start-up, on lmdb's write thread, soon after.
    await vi.waitFor(async () => expect(await snapshotKeys(crashCopy(path))).toBe(0));
    const full = openStore(scanned);
    expect(full.log.some((l) => l.includes('counted every record'))).toBe(true);
    expect(figures(store)).toEqual(before);
    expect(figures(full.store)).toEqual(before);
    for (const s of [store, full.store]) {
      const v = s.newVersion();
      expect(compareHlc(v, ahead)).toBeGreaterThan(0);
      if (s === store) expect(compareHlc(v, lastIssued)).toBeGreaterThan(0);
    }
    // The expiring key whose time comes after the restart moves to the tombstones as it would have.
    vi.setSystemTime(now + 2000);
    expect(figures(store)).toEqual(figures(full.store));
    expect(figures(store)).toMatchObject({ expiring: 1 });

    // Written to after a restart from a snapshot, the store saves a new one that holds the writes.
    void store.set(b('k1'), b('rewritten'));
    void store.delete(b('k2'));
    addMembers(store, b('s'), [b('d')]);
    const after = figures(store);
    await store.close();
    const again = openStore(path);
    expect(again.log.some((l) => l.includes(LOADED))).toBe(true);
    expect(figures(again.store)).toEqual(after);
  });

  it('after a crash counts every record: the snapshot, deleted or not yet, is refused beside the log', async () => {
    const path = join(tempDir(), 'db');
    const first = openStore(path).store;
    fill(first, { wall: Date.now(), counter: 0 });
    await first.close();
    const { store, log } = openStore(path);
    expect(log.some((l) => l.includes(LOADED))).toBe(true);
    void store.set(b('k1'), b('after the snapshot'));
    void store.delete(b('k3'));
    addMembers(store, b('t'), [b('two')]);
    store.flush();
    const running = figures(store);
    // The start-up's deletion of the snapshot may not have reached LMDB yet: the log refuses it then.
    const copy = crashCopy(path);
    const recovered = openStore(copy);
    expect(recovered.log.some((l) => l.includes(LOADED))).toBe(false);
    expect(recovered.log.some((l) => l.includes('counted every record'))).toBe(true);
    expect(recovered.store.readValue(b('k1')).value?.toString()).toBe('after the snapshot');
    expect(figures(recovered.store)).toEqual(running);
  });

  it('is not used beside a log left by a crash, even when LMDB already holds its writes', async () => {
    const path = join(tempDir(), 'db');
    const first = openStore(path).store;
    // Plain writes only: replaying them again changes nothing in LMDB, not even its transaction id.
    for (let i = 0; i < 50; i++) void first.set(b(`k${i}`), b(`v${i}`));
    first.flush();
    const crashed = crashCopy(path);
    await first.close();
    const segments = readdirSync(crashed).filter((n) => n.startsWith('wal-'));
    expect(segments.length).toBeGreaterThan(0);
    for (const name of segments) cpSync(join(crashed, name), join(path, name));
    const { store, log } = openStore(path);
    expect(whyNotUsed(log)).toBe('the write-ahead log was not empty');
    expect(figures(store)).toEqual(figures(openStore(await scanCopy(crashed)).store));
  });

  it('is not used with other tree bits or another cluster secret', async () => {
    const path = join(tempDir(), 'db');
    const first = openStore(path).store;
    fill(first, { wall: Date.now(), counter: 0 });
    const before = figures(first);
    await first.close();

    const eight = openStore(path, { treeBits: 8 });
    expect(whyNotUsed(eight.log)).toBe('saved with 16 tree bits');
    // The root is the sum of every item hash, whatever the tree's shape.
    expect(figures(eight.store)).toEqual(before);
    await eight.store.close();

    const other = openStore(path, { treeBits: 8, clusterSecret: 'another secret' });
    expect(whyNotUsed(other.log)).toBe('saved with another cluster secret');
    expect(figures(other.store)).toEqual(before);
  });

  it('is not used once LMDB was written after it (an older release, a tool)', async () => {
    const path = join(tempDir(), 'db');
    const first = openStore(path).store;
    fill(first, { wall: Date.now(), counter: 0 });
    const keys = first.size;
    await first.close();

    const dbs = openDatabases(path);
    const rec = encodeRecord({ wall: Date.now(), counter: 0, node: 'n9', flags: 0, body: b('outside'), item: '\0'.repeat(16), keyHash: { hi: 1, lo: 1 } });
    dbs.root.transactionSync(() => {
      void dbs.db.put(b('written outside'), rec);
      void dbs.index.put(indexKey(rec, b('written outside')), Buffer.alloc(0));
    });
    await dbs.root.close();

    const { store, log } = openStore(path);
    expect(whyNotUsed(log)).toMatch(/^LMDB was written after it/);
    expect(store.size).toBe(keys + 1);
  });
});

describe('the start-up scan', () => {
  it('reads records of any size in lmdb\'s shared buffers, member records (keys from 0x00) first', async () => {
    const path = join(tempDir(), 'db');
    const first = openStore(path).store;
    for (const size of [1, 100_000, 3_000_000, 1, 70_000]) void first.set(b(`v${size}-${first.size}`), Buffer.alloc(size, size & 0xff));
    addMembers(first, b('s'), [b('a'), b('b')]);
    const before = figures(first);
    await first.close();
    const { store, log } = openStore(await scanCopy(path));
    expect(log.some((l) => l.includes('counted every record'))).toBe(true);
    expect(figures(store)).toEqual(before);
  });
});

describe('snapshot records', () => {
  const mark = { bits: 16, fingerprint: '0123456789abcdef' };
  const big = Buffer.alloc(2.5 * 2 ** 20 + 3, 7);

  function sample(): Snapshot {
    return {
      floor: { wall: 1_700_000_000_123, counter: 9 },
      live: 12,
      tombstones: 3,
      liveBytes: 4567,
      tree: Buffer.from([1, 0, 0, 0, ...Array<number>(16).fill(5)]),
      expiring: encodeEntries(new Map([['k\u00ff', 1_700_000_000_000]])),
      cards: big,
      records: encodeEntries(new Map()),
    };
  }

  it('reads back what was saved, across chunks, once', async () => {
    const { dbs } = tempDatabases('snapshot');
    saveSnapshot(dbs, mark, sample());
    const found = takeSnapshot(dbs, mark);
    await found?.removed;
    const taken = found?.taken;
    const want = sample();
    if (taken === undefined || !('snapshot' in taken)) throw new Error(`not read back: ${JSON.stringify(taken)}`);
    const got = taken.snapshot;
    // Buffers compared with equals(): a deep comparison of megabytes, byte by byte, takes seconds.
    expect({ ...got, cards: got.cards.equals(want.cards) }).toEqual({ ...want, cards: true });
    expect(takeSnapshot(dbs, mark)).toBeUndefined();
  });

  it('is ignored when a chunk is missing or its bytes changed, and deleted all the same', async () => {
    const { dbs } = tempDatabases('snapshot');
    const chunk = Buffer.from([1, 0, 0, 0, 1]);
    // Each change rewrites the head with its own transaction's id, as if the snapshot had been saved so.
    const change = (f: () => void): void =>
      dbs.root.transactionSync(() => {
        f();
        const head = Buffer.from(dbs.snapshot.getBinary(Buffer.from([0])) as Buffer);
        head.writeDoubleLE(dbs.root.getWriteTxnId(), 18);
        void dbs.snapshot.put(Buffer.from([0]), head);
      });
    saveSnapshot(dbs, mark, sample());
    change(() => void dbs.snapshot.put(chunk, Buffer.alloc(2 ** 20, 1)));
    const changed = takeSnapshot(dbs, mark);
    expect(changed?.taken).toEqual({ ignored: 'checksum mismatch' });
    await changed?.removed;
    expect([...dbs.snapshot.getKeys({})]).toEqual([]);

    saveSnapshot(dbs, mark, sample());
    change(() => void dbs.snapshot.remove(chunk));
    const short = takeSnapshot(dbs, mark);
    expect(short?.taken).toEqual({ ignored: '2 chunks, 3 saved' });
    await short?.removed;
    expect(takeSnapshot(dbs, mark)).toBeUndefined();
  });

  it('encodes maps of latin1 strings to numbers, and refuses bytes cut short', () => {
    const map = new Map([
      ['', 0],
      ['set\u0000epoch\u00ff', 3],
      ['k'.repeat(3000), 1_700_000_000_000],
    ]);
    const bytes = encodeEntries(map);
    expect(decodeEntries(bytes)).toEqual(map);
    expect(() => decodeEntries(bytes.subarray(0, bytes.length - 1))).toThrow(RangeError);
  });
});
