import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { open } from 'lmdb';
import { describe, expect, it, onTestFinished } from 'vitest';
import { compareHlc } from '../../src/hlc.js';
import { increment, truncate } from '../../src/store/operations.js';
import { decodeRecord, FLAG_TOMBSTONE, isTombstone, recordNode, recordValue } from '../../src/store/record.js';
import { Store } from '../../src/store/store.js';
import { plainState } from '../../src/store/state.js';
import { applyPlain, silent, tempDir } from '../helpers.js';

const b = (s: string): Buffer => Buffer.from(s);

function openStore(path = join(tempDir(), 'db'), grace = 86_400, fsync: 'periodic' | 'always' = 'periodic'): Store {
  const store = Store.open({ path, nodeId: 'n1', maxClockSkewMs: 60_000, tombstoneGraceSeconds: grace, logger: silent, fsync });
  onTestFinished(() => store.close());
  return store;
}

describe('Store', () => {
  it('sees its own writes at once; with fsync "periodic" nothing waits, with "always" a read waits for the fdatasync', async () => {
    const periodic = openStore();
    expect(periodic.set(b('k'), b('v1'))).toBeNull();
    expect(periodic.readValue(b('k'))).toMatchObject({ after: null });
    expect(periodic.readValue(b('k')).value?.toString()).toBe('v1');

    const always = openStore(join(tempDir(), 'db'), 86_400, 'always');
    const done = always.set(b('k'), b('v1'));
    expect(done).toBeInstanceOf(Promise);
    const read = always.readValue(b('k'));
    expect(read.value?.toString()).toBe('v1');
    expect(read.after).toBe(done);
    always.flush();
    await done;
    expect(always.readValue(b('k')).after).toBeNull();
    expect(always.readValue(b('k')).value?.toString()).toBe('v1');
  });

  it('versions writes by its clock and keeps deletes as tombstones', async () => {
    const store = openStore();
    await store.set(b('k'), b('v'));
    const first = decodeRecord(Buffer.from(store.read(b('k')).value as Buffer));
    await store.delete(b('k'));
    const tomb = decodeRecord(Buffer.from(store.read(b('k')).value as Buffer));
    expect(tomb.flags).toBe(FLAG_TOMBSTONE);
    expect(tomb.node).toBe('n1');
    expect(compareHlc(tomb, first)).toBeGreaterThan(0);
    expect(store.readValue(b('k')).value).toBeUndefined();
    expect(store.size).toBe(0);
    expect(store.tombstoneCount).toBe(1);
  });

  it('counts, scans and truncates live keys only, pending writes included', async () => {
    const store = openStore();
    for (const k of ['b:2', 'a:1', 'b:1', 'c']) void store.set(b(k), b('x'));
    const del = store.delete(b('b:2'));
    void store.set(b('b:0'), b('y'));
    expect(store.size).toBe(4);
    expect(store.scan(b('b:')).map(String)).toEqual(['b:0', 'b:1']);
    expect(store.scan(Buffer.alloc(0)).map(String)).toEqual(['a:1', 'b:0', 'b:1', 'c']);
    await del;
    await truncate(store);
    expect(store.size).toBe(0);
    expect(store.scan(Buffer.alloc(0))).toEqual([]);
    expect(store.tombstoneCount).toBe(5);
  });

  it('keeps committed data across a reopen and recounts it', async () => {
    const path = join(tempDir(), 'db');
    const first = Store.open({ path, nodeId: 'n1', maxClockSkewMs: 60_000, tombstoneGraceSeconds: 10, logger: silent });
    void first.set(b('a'), b('1'));
    void first.set(b('b'), b('2'));
    await first.delete(b('a'));
    await first.close();
    const second = openStore(path);
    expect(second.readValue(b('b')).value?.toString()).toBe('2');
    expect(second.readValue(b('a')).value).toBeUndefined();
    expect(second.size).toBe(1);
    expect(second.tombstoneCount).toBe(1);
  });

  it('keeps a data directory whose name has a dot, or that exists already and is empty, as a directory', async () => {
    for (const path of [join(tempDir(), 'node.1'), tempDir()]) {
      const store = Store.open({ path, nodeId: 'n1', maxClockSkewMs: 60_000, tombstoneGraceSeconds: 10, logger: silent });
      await store.set(b('k'), b('v'));
      await store.close();
      expect(existsSync(join(path, 'data.mdb'))).toBe(true);
      expect(openStore(path).readValue(b('k')).value?.toString()).toBe('v');
    }
  });

  it('purges tombstones only after the grace period', async () => {
    const store = openStore();
    await store.set(b('live'), b('x'));
    await store.set(b('gone'), b('x'));
    await store.delete(b('gone'));
    expect(await store.purgeTombstones(Date.now() - 86_400_000)).toBe(0);
    expect(store.read(b('gone')).value).toBeDefined();
    expect(await store.purgeTombstones(Date.now() + 1)).toBe(1);
    expect(store.read(b('gone')).value).toBeUndefined();
    expect(store.readValue(b('live')).value?.toString()).toBe('x');
    expect(store.tombstoneCount).toBe(0);
    expect(store.size).toBe(1);
  });

  it('after a purge, refuses a remote write older than the purge for a key it does not hold', async () => {
    const path = join(tempDir(), 'db');
    const first = openStore(path);
    await first.set(b('gone'), b('x'));
    const old = { ...first.newVersion(), node: 'peer' };
    await first.delete(b('gone'));
    await first.purgeTombstones(Date.now() + 1);
    await first.close();
    // The horizon survives a restart.
    const store = openStore(path);
    // A peer that missed the delete pushes its old live copy back: refused, the delete stays.
    expect(applyPlain(store, b('gone'), old, b('x'))).toBeUndefined();
    expect(store.read(b('gone')).value).toBeUndefined();
    expect(store.refusedPurged).toBe(1);
    // Newer writes, and old ones for keys it holds, are applied as usual.
    await store.set(b('held'), b('v'));
    expect(applyPlain(store, b('held'), { wall: Date.now() + 1000, counter: 0, node: 'peer' }, b('w'))).not.toBeUndefined();
    expect(applyPlain(store, b('new'), { wall: Date.now() + 1000, counter: 0, node: 'peer' }, b('n'))).not.toBeUndefined();
    await store.settled();
    expect(store.readValue(b('new')).value?.toString()).toBe('n');
  });

  it('upgrades format-1 records of an earlier release and rebuilds the key-hash index', async () => {
    const path = join(tempDir(), 'db');
    const wall = Date.now() - 5000;
    // Format 1: format, flags, wall (6), counter (2), node id length, node id, value.
    const v1 = (tombstone: boolean, counter: number, value: string): Buffer => {
      const head = Buffer.alloc(11);
      head[0] = 1;
      head[1] = tombstone ? 1 : 0;
      head.writeUIntBE(wall, 2, 6);
      head.writeUInt16BE(counter, 8);
      head[10] = 2;
      return Buffer.concat([head, Buffer.from('n0'), Buffer.from(value)]);
    };
    const env = open<Buffer, Buffer>({ path, keyEncoding: 'binary', encoding: 'binary' });
    const records = env.openDB<Buffer, Buffer>('records', { keyEncoding: 'binary', encoding: 'binary' });
    await records.put(b('live'), v1(false, 1, 'value one'));
    await records.put(b('dead'), v1(true, 2, ''));
    await env.close();

    const upgraded = openStore(path);
    expect(upgraded.readValue(b('live')).value?.toString()).toBe('value one');
    expect(upgraded.size).toBe(1);
    expect(upgraded.tombstoneCount).toBe(1);
    expect(upgraded.ranges.recordsUnder(0, 0).map((e) => e.key.toString()).sort()).toEqual(['dead', 'live']);
    // The same writes applied to a fresh store give the same root.
    const fresh = openStore();
    await applyPlain(fresh, b('live'), { wall, counter: 1, node: 'n0' }, b('value one'));
    await applyPlain(fresh, b('dead'), { wall, counter: 2, node: 'n0' }, undefined);
    expect(upgraded.rootHash().equals(fresh.rootHash())).toBe(true);
  });

  it('reads a data directory of the previous release (format 2) unchanged: values, counts, root', async () => {
    const path = join(tempDir(), 'db');
    const first = openStore(path);
    await first.set(b('live'), b('value one'));
    await first.set(b('n'), b('41'));
    await first.delete(b('dead'));
    await first.settled();
    const root = first.rootHash();
    await first.close();
    // Make it what the previous release wrote: every record in format 2, the directory marked so.
    const env = open<Buffer, Buffer>({ path, keyEncoding: 'binary', encoding: 'binary' });
    const records = env.openDB<Buffer, Buffer>('records', { keyEncoding: 'binary', encoding: 'binary' });
    const meta = env.openDB<number, string>('meta', { keyEncoding: 'ordered-binary', encoding: 'msgpack' });
    for (const { key, value } of [...records.getRange({})].map((e) => ({ key: Buffer.from(e.key), value: Buffer.from(e.value) }))) {
      value[0] = 2;
      await records.put(key, value);
    }
    await meta.put('record_format', 2);
    await env.close();

    const store = openStore(path);
    expect(store.readValue(b('live')).value?.toString()).toBe('value one');
    expect(store.size).toBe(2);
    expect(store.tombstoneCount).toBe(1);
    expect(store.rootHash().equals(root)).toBe(true);
    // Written anew in format 3; an INC on an old plain integer keeps its epoch.
    await store.set(b('live'), b('value two'));
    expect(store.read(b('live')).value?.[0]).toBe(3);
    expect(increment(store, b('n'), 1n)).toMatchObject({ value: 42n });
  });

  it('finds records by key-hash range and by key hash, pending writes included', async () => {
    const store = openStore();
    for (let i = 0; i < 300; i++) void store.set(b(`k${i}`), b('v'));
    await store.settled();
    const pending = store.set(b('pending'), b('p'));
    const all = store.ranges.recordsUnder(0, 0);
    expect(all).toHaveLength(301);
    let total = 0;
    for (let i = 0; i < 16; i++) {
      const part = store.ranges.recordsUnder(1, i);
      for (const { rec } of part) expect(rec.readUInt32BE(26) >>> 28).toBe(i);
      total += part.length;
    }
    expect(total).toBe(301);
    const one = all.find((e) => e.key.toString() === 'pending');
    expect(one).toBeDefined();
    const byHash = store.ranges.recordsWithKeyHash(Buffer.from((one as { rec: Buffer }).rec.subarray(26, 34)));
    expect(byHash.map((e) => e.key.toString())).toEqual(['pending']);
    await pending;
    expect(store.ranges.recordsWithKeyHash(Buffer.from((one as { rec: Buffer }).rec.subarray(26, 34)))).toHaveLength(1);
    expect(store.ranges.recordsUnder(8, 0xffffffff).length).toBeLessThan(2);
  });
});

describe('Store clock', () => {
  it('versions new writes after every stored one, even if the wall clock went back', async () => {
    const path = join(tempDir(), 'db');
    const first = Store.open({ path, nodeId: 'n1', maxClockSkewMs: 60_000, tombstoneGraceSeconds: 10, logger: silent });
    // A record from a minute in the future, as if this node's clock had been ahead before a restart.
    await first.applyRemote(b('ahead'), plainState({ wall: Date.now() + 30_000, counter: 5, node: 'n0' }, b('v')));
    await first.set(b('k'), b('old'));
    const stored = decodeRecord(Buffer.from(first.read(b('k')).value as Buffer));
    await first.close();
    const second = openStore(path);
    const next = second.newVersion();
    expect(compareHlc(next, stored)).toBeGreaterThan(0);
  });
});

describe('Store.applyRemote', () => {
  it('keeps the newest version, ignores equal and older ones, and never resurrects a delete', async () => {
    const store = openStore();
    const now = Date.now();
    expect(applyPlain(store, b('k'), { wall: now, counter: 2, node: 'n2' }, b('v2'))).not.toBeUndefined();
    expect(applyPlain(store, b('k'), { wall: now, counter: 1, node: 'n9' }, b('older'))).toBeUndefined();
    expect(applyPlain(store, b('k'), { wall: now, counter: 2, node: 'n2' }, b('v2'))).toBeUndefined();
    // Same clock reading: the node id decides, the same way on every replica.
    expect(applyPlain(store, b('k'), { wall: now, counter: 2, node: 'n3' }, b('v3'))).not.toBeUndefined();
    expect(store.readValue(b('k')).value?.toString()).toBe('v3');
    await applyPlain(store, b('gone'), { wall: now, counter: 5, node: 'n2' }, undefined);
    expect(applyPlain(store, b('gone'), { wall: now, counter: 4, node: 'n2' }, b('zombie'))).toBeUndefined();
    expect(store.readValue(b('gone')).value).toBeUndefined();
    // A local write after observing remote versions orders after them.
    await store.set(b('k'), b('local'));
    expect(decodeRecord(Buffer.from(store.read(b('k')).value as Buffer)).node).toBe('n1');
  });

  it('with "always", serves a remote write not yet on disk at once, but not a local one', () => {
    const store = openStore(join(tempDir(), 'db'), 86_400, 'always');
    void applyPlain(store, b('r'), { wall: Date.now(), counter: 0, node: 'n2' }, b('remote'));
    expect(store.readValue(b('r'))).toMatchObject({ after: null });
    const done = store.set(b('l'), b('local'));
    expect(store.readValue(b('l')).after).toBe(done);
    store.flush();
  });

  it('announces acknowledged local writes (not applied remote ones) at the flush, or after the fdatasync', async () => {
    for (const mode of ['periodic', 'always'] as const) {
      const store = openStore(join(tempDir(), 'db'), 86_400, mode);
      const seen: string[] = [];
      store.onAcknowledged((writes) => seen.push(...writes.map((w) => `${w.key.toString()}=${isTombstone(w.rec) ? '-' : recordValue(w.rec).toString()}@${recordNode(w.rec)}`)));
      const set = store.set(b('mine'), b('1'));
      void applyPlain(store, b('theirs'), { wall: Date.now(), counter: 0, node: 'n2' }, b('2'));
      const del = store.delete(b('mine'));
      expect(seen).toEqual([]);
      store.flush();
      if (mode === 'always') {
        expect(seen).toEqual([]);
        await Promise.all([set, del]);
        await new Promise((resolve) => setImmediate(resolve));
      }
      expect(seen).toEqual(['mine=1@n1', 'mine=-@n1']);
    }
  });
});

describe('Store Merkle tree', () => {
  it('is rebuilt at start-up to the same root it had, and follows writes, deletes and purges', async () => {
    const path = join(tempDir(), 'db');
    const first = Store.open({ path, nodeId: 'n1', maxClockSkewMs: 60_000, tombstoneGraceSeconds: 10, logger: silent });
    const empty = Buffer.from(first.rootHash());
    for (let i = 0; i < 200; i++) void first.set(b(`k${i}`), b(`v${i}`));
    for (let i = 0; i < 50; i++) void first.delete(b(`k${i * 2}`));
    const root = Buffer.from(first.rootHash());
    expect(root.equals(empty)).toBe(false);
    await first.close();
    const second = openStore(path);
    expect(second.rootHash().equals(root)).toBe(true);
    await second.set(b('k1'), b('changed'));
    expect(second.rootHash().equals(root)).toBe(false);
    await second.purgeTombstones(Date.now() + 1);
    await truncate(second);
    await second.purgeTombstones(Date.now() + 1);
    expect(second.rootHash().equals(empty)).toBe(true);
  });

  it('gives replicas with the same records the same root, whatever the order of writes', async () => {
    const a = openStore();
    const c = openStore();
    const now = Date.now();
    const writes = Array.from({ length: 30 }, (_, i) => [b(`key${i % 7}`), { wall: now + i, counter: 0, node: `n${i % 3}` }, i % 5 === 0 ? undefined : b(`v${i}`)] as const);
    for (const [k, v, val] of writes) await applyPlain(a, k, v, val);
    for (const [k, v, val] of [...writes].reverse()) await applyPlain(c, k, v, val);
    expect(a.rootHash().equals(c.rootHash())).toBe(true);
  });
});
