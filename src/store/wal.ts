import { closeSync, fdatasync, fsync, ftruncateSync, openSync, readdirSync, readFileSync, unlink, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { Logger } from 'pino';
import type { FsyncMode } from '../config/schema.js';
import { StorageError } from '../errors.js';
import { expected } from '../expected.js';

/*
 * The write-ahead log (DESIGN.md section 4): every write is appended here before it is acknowledged,
 * and LMDB is brought up to date behind it, in large transactions off the request path.
 *
 * The log is a series of segment files `wal-<seq>.log` in the data directory, `seq` 16 hex digits. A
 * segment holds the writes of one LMDB batch (the store rotates segments when it hands a batch to LMDB)
 * and is deleted once that batch is committed and synced. Each entry:
 *
 *   0..3    n = body length, little-endian
 *   4..7    n XOR 0xffffffff (a torn or damaged length shows here, before the body is read)
 *   8..11   CRC-32 of the body
 *   12..    the body, n bytes (the store's: key and encoded record)
 *
 * Durability (`[storage] fsync`): "periodic" acknowledges once the entry is written to the file (the
 * operating system has it: a crash of the process loses nothing), and fdatasyncs every `periodMs`;
 * "always" acknowledges after an fdatasync that covers the entry, one fdatasync for every write waiting.
 */

export type { FsyncMode } from '../config/schema.js';
export type LogMode = FsyncMode | 'none'; // "none": a cache node's log (its directory wiped at every start), never synced

export interface LogOptions {
  /** The data directory (LMDB's). */
  readonly dir: string;
  readonly mode: LogMode;
  readonly periodMs: number;
  readonly logger: Logger;
  /** The first segment number to use (one past the newest found at start-up). */
  readonly firstSeq: number;
}

const HEADER = 12;
/** The largest append buffer kept once its writes are out: a stream appends ~1 MiB a frame, and a new buffer for each cost more than the appends. */
const KEEP_BYTES = 4 * 1024 * 1024;
const NAME = /^wal-([0-9a-f]{16})\.log$/;

export function segmentName(seq: number): string {
  return `wal-${seq.toString(16).padStart(16, '0')}.log`;
}

/** The segment files of `dir`, oldest first. */
export function listSegments(dir: string): { seq: number; path: string }[] {
  const found: { seq: number; path: string }[] = [];
  for (const name of readdirSync(dir)) {
    const m = NAME.exec(name);
    if (m !== null) found.push({ seq: parseInt(m[1] as string, 16), path: join(dir, name) });
  }
  return found.sort((a, b) => a.seq - b.seq);
}

/**
 * The bodies of a segment's entries, in order. A torn tail (an entry cut short or never fully written,
 * as a crash or power loss mid-write leaves it) ends the segment and is reported through `onTorn`;
 * damage before the tail is an error that names the file and the offset: the entries after it cannot
 * be trusted, and skipping them could lose acknowledged writes silently.
 */
export function readSegment(path: string, maxBody: number, onTorn: (offset: number, why: string) => void): Buffer[] {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (err) {
    // Deleted since it was listed: its writes were in LMDB.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const bodies: Buffer[] = [];
  let o = 0;
  while (o < data.length) {
    const rest = data.length - o;
    const why = entryProblem(data, o, maxBody);
    if (why === undefined) {
      const n = data.readUInt32LE(o);
      bodies.push(data.subarray(o + HEADER, o + HEADER + n));
      o += HEADER + n;
      continue;
    }
    if (isTornTail(data, o, maxBody)) {
      onTorn(o, why);
      return bodies;
    }
    throw new StorageError(
      `write-ahead log ${path} is damaged at offset ${o} (${why}; ${rest} bytes follow). ` +
        'The writes after that point cannot be recovered from it. To recover: stop the node, move the ' +
        "node's data directory aside, and start it empty: anti-entropy refills it from its peers.",
    );
  }
  return bodies;
}

/** Why the entry at `o` is not whole and intact, or undefined if it is. */
function entryProblem(data: Buffer, o: number, maxBody: number): string | undefined {
  if (data.length - o < HEADER) return 'entry header cut short';
  const n = data.readUInt32LE(o);
  if ((n ^ data.readUInt32LE(o + 4)) >>> 0 !== 0xffffffff || n > maxBody) return 'bad entry length';
  if (data.length - o - HEADER < n) return 'entry cut short';
  if (crc32(data.subarray(o + HEADER, o + HEADER + n)) !== data.readUInt32LE(o + 8)) return 'checksum mismatch';
  return undefined;
}

/**
 * Whether a bad entry at `o` is what an interrupted append leaves: the last entry of the file (cut
 * short, or whole but failing its checksum), or a tail of zeros (a file extended but not written).
 */
function isTornTail(data: Buffer, o: number, maxBody: number): boolean {
  if (data.length - o < HEADER) return true;
  if (data.subarray(o).every((b) => b === 0)) return true;
  const n = data.readUInt32LE(o);
  const lengthOk = (n ^ data.readUInt32LE(o + 4)) >>> 0 === 0xffffffff && n <= maxBody;
  return lengthOk && o + HEADER + n >= data.length;
}

interface SyncGroup {
  /** The position it covers, fixed when the sync starts. */
  target: number;
  readonly promise: Promise<void>;
  resolve(): void;
  reject(err: Error): void;
}

function group(): SyncGroup {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  // A failed sync is reported to whoever waits on it; nobody waiting must not crash the process.
  const promise = expected(
    new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    }),
  );
  return { target: 0, promise, resolve, reject };
}

/**
 * The appending side of the log. Positions are counted in bytes over all segments since start-up, so
 * "synced up to" compares across a rotation.
 */
export class WriteAheadLog {
  private fd: number;
  private seq: number;
  private readonly dirFd: number;
  private buf = Buffer.allocUnsafe(64 * 1024);
  private len = 0;
  /** Bytes of the current segment written to its file. */
  private segmentBytes = 0;
  /** Position after the last byte written to a file. */
  private written = 0;
  /** Position up to which everything is on disk. */
  private synced = 0;
  /** When the first write not yet on disk, nor in the sync under way, was written (ms), or 0. */
  private unsyncedSince = 0;
  /** When the first write in the sync under way was written (ms), or 0. */
  private syncingSince = 0;
  /** Files with writes not yet synced: the current segment and retired ones. */
  private dirty = new Set<number>();
  /**
   * Ended segments' files, closed when the next sync round ends: by then their writes are synced
   * and no fdatasync on them is still under way.
   */
  private retired: number[] = [];
  /** A new segment's directory entry is not yet on disk. */
  private dirDirty = true;
  private syncing: SyncGroup | null = null;
  private waiting: SyncGroup | null = null;
  private readonly timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Segment deletions under way. */
  private readonly removing = new Set<Promise<void>>();
  /** fdatasyncs done, for STATS. */
  syncs = 0;

  constructor(private readonly opts: LogOptions) {
    this.seq = opts.firstSeq;
    this.fd = this.openSegment(this.seq);
    this.dirFd = openSync(opts.dir, 'r');
    if (opts.mode !== 'always') {
      this.timer = setInterval(() => {
        if (this.syncing === null && (this.written > this.synced || this.dirDirty)) this.startSync();
      }, opts.periodMs);
      this.timer.unref();
    }
  }

  get mode(): LogMode {
    return this.opts.mode;
  }

  /** The segment that appends go to now. */
  get segment(): number {
    return this.seq;
  }

  /** Milliseconds since the oldest write that is not yet on disk (0: all synced). */
  get syncLagMs(): number {
    const oldest = this.syncingSince || this.unsyncedSince;
    return oldest === 0 ? 0 : Date.now() - oldest;
  }

  /** Buffers one entry; it reaches the file with the next `flush()`. Returns the position after it. */
  append(body: Buffer): number {
    const need = HEADER + body.length;
    if (this.len + need > this.buf.length) this.grow(need);
    const b = this.buf;
    const o = this.len;
    // Byte stores and `set`, not Buffer's write methods: see record.ts, writeRecord.
    putLe32(b, o, body.length);
    putLe32(b, o + 4, ~body.length);
    putLe32(b, o + 8, crc32(body));
    b.set(body, o + HEADER);
    this.len += need;
    return this.written + this.len;
  }

  /**
   * Writes the buffered entries to the file with one write. Throws a StorageError if the file cannot
   * take them (disk full); the segment is cut back so that it ends with a whole entry, and the
   * entries are gone (the caller undoes them).
   */
  flush(): void {
    this.writeOut();
    if (this.waiting !== null && this.syncing === null) this.startSync();
  }

  private writeOut(): void {
    if (this.len === 0) return;
    let done = 0;
    try {
      // At an explicit position: after a failed append the file is cut back (cutBack), and the file
      // offset would still point past the cut, leaving a hole of zeros in the middle of the segment.
      while (done < this.len) done += writeSync(this.fd, this.buf, done, this.len - done, this.segmentBytes + done);
    } catch (err) {
      this.len = 0;
      if (done > 0) this.cutBack();
      throw new StorageError(`cannot append to the write-ahead log: ${(err as Error).message}`, { cause: err });
    }
    if (this.unsyncedSince === 0) this.unsyncedSince = Date.now();
    this.written += done;
    this.segmentBytes += done;
    this.len = 0;
    if (this.buf.length > KEEP_BYTES) this.buf = Buffer.allocUnsafe(64 * 1024);
    this.dirty.add(this.fd);
  }

  /**
   * What a reply about the write that ends at `pos` must wait for: in "always" mode an fdatasync
   * that covers it, unless one already has; in "periodic" (and "none") mode nothing (null).
   */
  durableAfter(pos: number): Promise<void> | null {
    if (this.opts.mode !== 'always' || pos <= this.synced) return null;
    if (this.syncing !== null && this.syncing.target >= pos) return this.syncing.promise;
    // Started by the next flush() (the batch that wrote `pos` is not all appended yet), or when the
    // sync under way ends.
    this.waiting ??= group();
    return this.waiting.promise;
  }

  /** A promise that settles once everything appended so far is on disk, in either mode. */
  syncAll(): Promise<void> {
    this.flush();
    if (this.written <= this.synced && !this.dirDirty && this.syncing === null) return Promise.resolve();
    this.waiting ??= group();
    const p = this.waiting.promise;
    if (this.syncing === null) this.startSync();
    return p;
  }

  /**
   * Starts a new segment for the appends that follow and returns the number of the one just ended.
   * The caller deletes it (`remove`) once LMDB holds its writes.
   */
  rotate(): number {
    this.flush();
    const old = this.seq;
    this.retired.push(this.fd);
    this.seq++;
    this.fd = this.openSegment(this.seq);
    this.segmentBytes = 0;
    this.dirDirty = true;
    return old;
  }

  /** Deletes an ended segment (its writes are in LMDB, synced). A failure only leaves a file to replay. */
  remove(seq: number): void {
    const done = new Promise<void>((resolve) =>
      unlink(join(this.opts.dir, segmentName(seq)), (err) => {
        if (err) this.opts.logger.warn({ err, seq }, 'cannot delete a write-ahead log segment');
        this.removing.delete(done);
        resolve();
      }),
    );
    this.removing.add(done);
  }

  /**
   * Syncs what is written and closes the files; with `empty` (LMDB holds everything) deletes the
   * current segment too. Resolves once every deletion is done, so the directory can be opened again.
   */
  async close(empty: boolean): Promise<void> {
    if (this.closed) return;
    await this.syncAll();
    this.closed = true;
    clearInterval(this.timer);
    for (const fd of this.retired) closeSync(fd);
    this.retired = [];
    closeSync(this.fd);
    closeSync(this.dirFd);
    if (empty) this.remove(this.seq);
    await Promise.all([...this.removing]);
  }

  private openSegment(seq: number): number {
    try {
      return openSync(join(this.opts.dir, segmentName(seq)), 'wx');
    } catch (err) {
      throw new StorageError(`cannot create write-ahead log segment ${segmentName(seq)}: ${(err as Error).message}`, { cause: err });
    }
  }

  private grow(need: number): void {
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + need));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  /** After a partial write: cut the segment back to its last whole entry. */
  private cutBack(): void {
    try {
      ftruncateSync(this.fd, this.segmentBytes);
    } catch (err) {
      // The torn tail stays; start-up drops it as it would after a crash.
      this.opts.logger.error({ err }, 'cannot cut back the write-ahead log after a failed append');
    }
  }

  /** One round of fdatasync over every file with unsynced writes (and the directory, for new segments); in "none" one that syncs nothing and closes ended segments. */
  private startSync(): void {
    // Those waiting may have appended entries still buffered (their batch is not over): they wait for
    // the round that the flush() ending their batch starts.
    const forWaiting = this.waiting !== null && this.len === 0;
    const current = forWaiting ? (this.waiting as SyncGroup) : group();
    if (forWaiting) this.waiting = null;
    current.target = this.written;
    this.syncing = current;
    this.syncingSince = this.unsyncedSince;
    this.unsyncedSince = 0;
    const files = this.opts.mode === 'none' ? [] : [...this.dirty];
    this.dirty.clear();
    const retiring = this.retired;
    this.retired = [];
    const dir = this.dirDirty && this.opts.mode !== 'none';
    this.dirDirty = false;
    let left = files.length + (dir ? 1 : 0);
    let failure: Error | undefined;
    const done = (err: NodeJS.ErrnoException | null): void => {
      if (err) failure ??= err;
      if (--left > 0) return;
      this.syncing = null;
      if (this.opts.mode !== 'none') this.syncs++;
      if (failure === undefined) {
        this.synced = Math.max(this.synced, current.target);
        this.syncingSince = 0;
        for (const fd of retiring) closeSync(fd);
        current.resolve();
      } else {
        // Nothing of this round is known to be on disk: the next round tries all of it again.
        for (const fd of files) this.dirty.add(fd);
        this.retired.unshift(...retiring);
        this.dirDirty ||= dir;
        this.unsyncedSince = this.syncingSince || this.unsyncedSince;
        this.syncingSince = 0;
        this.opts.logger.error({ err: failure }, 'write-ahead log fdatasync failed');
        current.reject(new StorageError(`cannot sync the write-ahead log: ${failure.message}`, { cause: failure }));
      }
      if (this.waiting !== null && this.len === 0) this.startSync();
    };
    if (left === 0) {
      left = 1;
      queueMicrotask(() => done(null));
      return;
    }
    for (const fd of files) fdatasync(fd, done);
    if (dir) fsync(this.dirFd, done);
  }
}

/** Little-endian 32 bits at `o`. */
function putLe32(b: Buffer, o: number, v: number): void {
  b[o] = v;
  b[o + 1] = v >>> 8;
  b[o + 2] = v >>> 16;
  b[o + 3] = v >>> 24;
}
