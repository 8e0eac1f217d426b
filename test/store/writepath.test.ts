import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { StorageError } from '../../src/errors.js';
import { openDatabases, type Databases } from '../../src/store/databases.js';
import { Overlay, PendingWrite } from '../../src/store/overlay.js';
import { encodeKeyedRecord } from '../../src/store/record.js';
import { WriteAheadLog, type FsyncMode } from '../../src/store/wal.js';
import { WritePath, type AcknowledgedWrite } from '../../src/store/writepath.js';
import { silent, tempDir } from '../helpers.js';

const b = (s: string): Buffer => Buffer.from(s);

/** A keyed record of `key` holding `value` (the store's own encoding, with made-up hashes). */
function keyed(key: string, value: string, counter = 0): Buffer {
  return encodeKeyedRecord(b(key), { wall: 1_700_000_000_000, counter, node: 'n1', flags: 0, body: b(value), item: 'i'.repeat(16), keyHash: { hi: 1, lo: 2 } });
}

interface Rig {
  readonly path: WritePath;
  readonly log: WriteAheadLog;
  readonly overlay: Overlay;
  readonly undone: { k: string; value: string; restored: string | undefined }[];
  readonly announced: AcknowledgedWrite[][];
}

const open: { dbs: Databases; log: WriteAheadLog; overlay: Overlay }[] = [];

afterEach(async () => {
  for (const { dbs, log, overlay } of open.splice(0)) {
    overlay.stop();
    await overlay.settle();
    await log.close(true);
    await dbs.root.close();
  }
});

function rig(mode: FsyncMode = 'periodic', durable: Record<string, string> = {}): Rig {
  const dir = join(tempDir(), 'db');
  const dbs = openDatabases(dir);
  const log = new WriteAheadLog({ dir, mode, periodMs: 100, logger: silent, firstSeq: 1 });
  const undone: Rig['undone'] = [];
  const announced: Rig['announced'] = [];
  // eslint-disable-next-line prefer-const -- the overlay's flush calls the write path made after it
  let path: WritePath;
  const overlay = new Overlay({ db: dbs.db, index: dbs.index, log, logger: silent, flush: () => path.flush() });
  path = new WritePath({
    log,
    overlay,
    logger: silent,
    readDurable: (key) => (durable[key.toString()] === undefined ? undefined : b(durable[key.toString()] as string)),
    onUndone: (e, restored) => undone.push({ k: e.k, value: e.rec.subarray(-1).toString(), restored: restored?.subarray(-1).toString() }),
  });
  path.onAcknowledged((ws) => announced.push(ws));
  open.push({ dbs, log, overlay });
  return { path, log, overlay, undone, announced };
}

function write(r: Rig, key: string, value: string, local = true): PendingWrite {
  const e = new PendingWrite(key, keyed(key, value), local);
  void r.path.add(e, r.overlay.get(key) !== undefined);
  return e;
}

describe('the write path', () => {
  it('flushes once per turn: waiters of that turn share one log write, then local writes are announced in order', async () => {
    const r = rig();
    const appended = vi.spyOn(r.log, 'flush');
    write(r, 'a', '1');
    write(r, 'b', '2', false);
    write(r, 'c', '3');
    expect(r.path.hasUnflushed).toBe(true);
    const waits = [r.path.flushed(), r.path.flushed()];
    // Nothing is in the file, or announced, before the turn's flush.
    expect(appended).not.toHaveBeenCalled();
    expect(r.announced).toEqual([]);
    await Promise.all(waits);
    expect(appended).toHaveBeenCalledTimes(1);
    expect(r.path.hasUnflushed).toBe(false);
    // Only this node's own writes are published; the remote one came from the broker.
    expect(r.announced.map((ws) => ws.map((w) => `${w.key.toString()}=${w.rec.subarray(-1).toString()}`))).toEqual([['a=1', 'c=3']]);
    // A waiter with nothing left to flush is settled by the next turn's flush, which writes nothing.
    await r.path.flushed();
    expect(appended).toHaveBeenCalledTimes(1);
    expect(r.announced).toHaveLength(1);
  });

  it('undoes a failed flush newest first, restoring each predecessor, tells every waiter and announces nothing', async () => {
    const r = rig('periodic', { old: 'x' });
    write(r, 'kept', '0');
    r.path.flush();
    write(r, 'old', '1');
    write(r, 'kept', '1');
    write(r, 'kept', '2');
    write(r, 'new', '1');
    const full = new StorageError('cannot append to the write-ahead log: ENOSPC');
    vi.spyOn(r.log, 'flush').mockImplementationOnce(() => {
      throw full;
    });
    const waiter = r.path.flushed();
    expect(() => r.path.flush()).toThrow(full);
    await expect(waiter).rejects.toBe(full);
    expect(r.undone).toEqual([
      { k: 'new', value: '1', restored: undefined },
      { k: 'kept', value: '2', restored: '1' },
      { k: 'kept', value: '1', restored: '0' },
      { k: 'old', value: '1', restored: 'x' },
    ]);
    // The overlay is back where it was: the flushed write of `kept`, nothing of `old` or `new`.
    expect(r.overlay.get('kept')?.rec.subarray(-1).toString()).toBe('0');
    expect(r.overlay.get('old')).toBeUndefined();
    expect(r.overlay.get('new')).toBeUndefined();
    expect(r.announced.flat().map((w) => w.key.toString())).toEqual(['kept']);
    // Writes after the failure go through.
    write(r, 'new', '2');
    await r.path.flushed();
    expect(r.announced.flat().map((w) => w.key.toString())).toEqual(['kept', 'new']);
  });

  it('with fsync "always", acknowledges and announces a local write only once the fdatasync covering it is done', async () => {
    const r = rig('always');
    const remote = write(r, 'r', '1', false);
    expect(r.path.ackOf(remote)).toBeNull();
    const e = write(r, 'a', '1');
    const ack = r.path.ackOf(e);
    expect(ack).toBeInstanceOf(Promise);
    expect(r.path.acknowledgedAfter()).toBeInstanceOf(Promise);
    await r.path.flushed();
    // In the file, not yet on disk: not announced.
    expect(r.announced).toEqual([]);
    await ack;
    await new Promise((resolve) => setImmediate(resolve));
    expect(r.announced.flat().map((w) => w.key.toString())).toEqual(['a']);
    expect(r.path.acknowledgedAfter()).toBeNull();
  });

  it('refuses writes once closed, after flushing what it holds', async () => {
    const r = rig();
    write(r, 'a', '1');
    r.path.close();
    expect(r.announced.flat().map((w) => w.key.toString())).toEqual(['a']);
    expect(() => write(r, 'b', '1')).toThrow(StorageError);
    await r.overlay.settle();
  });
});
