import type * as FS from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { StorageError } from '../../src/errors.js';
import { Store } from '../../src/store/store.js';
import { silent, tempDir } from '../helpers.js';

// The log's file writes fail while `full` is set, as on a full disk.
const disk = vi.hoisted(() => ({ full: false, writes: 0 }));
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof FS>();
  const writeSync = ((...args: Parameters<typeof fs.writeSync>) => {
    if (disk.full) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    disk.writes++;
    return fs.writeSync(...args);
  }) as typeof fs.writeSync;
  return { ...fs, default: { ...fs, writeSync }, writeSync };
});

const b = (s: string): Buffer => Buffer.from(s);

function open(path: string): Store {
  return Store.open({ path, nodeId: 'n1', maxClockSkewMs: 60_000, tombstoneGraceSeconds: 86_400, logger: silent });
}

function snapshot(store: Store, keys: string[]): unknown {
  return {
    values: keys.map((k) => store.readValue(b(k)).value?.toString()),
    size: store.size,
    tombstones: store.tombstoneCount,
    root: store.rootHash().toString('hex'),
  };
}

afterEach(() => {
  disk.full = false;
});

describe('a log append that fails (disk full)', () => {
  it('undoes the whole batch: values, counts and Merkle root are as before it, now and after a restart', async () => {
    const path = join(tempDir(), 'db');
    const store = open(path);
    const keys = ['in-lmdb', 'pending', 'gone', 'new'];
    void store.set(b('in-lmdb'), b('1'));
    void store.set(b('gone'), b('1'));
    await store.settled(); // these two are in LMDB now
    void store.set(b('pending'), b('1')); // this one is still in the overlay and the log
    store.flush();
    const before = snapshot(store, keys);

    disk.full = true;
    void store.set(b('in-lmdb'), b('2'));
    void store.set(b('pending'), b('2'));
    void store.set(b('pending'), b('3'));
    void store.delete(b('gone'));
    void store.set(b('new'), b('1'));
    void store.delete(b('new'));
    expect(() => store.flush()).toThrow(StorageError);
    expect(snapshot(store, keys)).toEqual(before);

    disk.full = false;
    void store.set(b('new'), b('2'));
    store.flush();
    const after = snapshot(store, keys);
    expect(after).toMatchObject({ values: ['1', '1', '1', '2'], size: 4, tombstones: 0 });
    await store.close();

    const reopened = open(path);
    try {
      expect(snapshot(reopened, keys)).toEqual(after);
    } finally {
      await reopened.close();
    }
  });

  it('tells every flushed() waiter the outcome of the one file write that carried their writes', async () => {
    const store = open(join(tempDir(), 'db'));
    try {
      // Two acknowledgers in one turn of the event loop share one write to the log file.
      void store.set(b('a'), b('1'));
      const first = store.flushed();
      void store.set(b('b'), b('1'));
      const second = store.flushed();
      expect(store.hasUnflushed).toBe(true);
      const writes = disk.writes;
      await Promise.all([first, second]);
      expect(disk.writes - writes).toBe(1);
      expect(store.hasUnflushed).toBe(false);

      disk.full = true;
      void store.set(b('c'), b('1'));
      const failed = store.flushed();
      await expect(failed).rejects.toThrow(StorageError);
      expect(store.readValue(b('c')).value).toBeUndefined();
      // A direct flush (the replicator's) settles the waiters too, failure included.
      void store.set(b('d'), b('1'));
      const waiting = store.flushed();
      expect(() => store.flush()).toThrow(StorageError);
      await expect(waiting).rejects.toThrow(StorageError);
    } finally {
      disk.full = false;
      await store.close();
    }
  });
});
