import type { Database } from 'lmdb';
import type { Logger } from 'pino';
import { indexKey, keyedKey, keyedKeyLength, keyedRecordOffset, recordKeyHashHi } from './record.js';
import type { WriteAheadLog } from './wal.js';

/**
 * A write that is in the log but not yet in LMDB. Made once per write and kept until LMDB has it: it
 * holds few objects (the key string, the keyed record, itself), which keeps the garbage collector's
 * copying of surviving writes cheap. Key and record are views made on demand.
 */
export class PendingWrite {
  /** The next write of the same key while this one is pending (see Overlay.add). */
  next: PendingWrite | undefined = undefined;
  /**
   * The pending write it replaced, restored if this one is undone; cleared once that one is in LMDB,
   * so a key rewritten without pause does not chain every write it ever had.
   */
  prev: PendingWrite | undefined = undefined;
  /** The LMDB batch (= log segment) it belongs to. */
  batch = 0;
  /** LMDB's key-hash index lacks this key: the batch that writes the record also indexes it. */
  newKey = false;
  /** Log position after it (for "always": the fdatasync it waits for). */
  logEnd = 0;
  /** Where the record starts in `body`. */
  readonly recOffset: number;

  constructor(
    /** The key in latin1: the overlay's map key. */
    readonly k: string,
    /** Key and record in one buffer (record.ts, keyed record), as the log holds it. */
    readonly body: Buffer,
    /** Written by this node's clients, not applied from elsewhere. */
    readonly local: boolean,
  ) {
    this.recOffset = keyedRecordOffset(keyedKeyLength(body));
  }

  get key(): Buffer {
    return keyedKey(this.body);
  }

  get rec(): Buffer {
    return this.body.subarray(this.recOffset);
  }
}

export interface OverlayOptions {
  readonly db: Database<Buffer, Buffer>;
  readonly index: Database<Buffer, Buffer>;
  readonly log: WriteAheadLog;
  readonly logger: Logger;
  /** Writes the log's buffered entries to its file (the store's flush, which undoes them on failure). */
  readonly flush: () => void;
}

/** A batch goes to LMDB this long after its first write, or sooner when it is large. */
const APPLY_DELAY_MS = 200;
const APPLY_MAX_WRITES = 16_384;
/** Past either, new writes wait for LMDB to catch up (backpressure), so memory stays bounded. */
const MAX_PENDING_BYTES = 64 * 1024 * 1024;
const MAX_PENDING_WRITES = 262_144;
const RETRY_MS = 1000;

/**
 * The writes that are in the write-ahead log but not yet in LMDB, by key, so that reads see every
 * acknowledged write at once; and the applier that moves them into LMDB behind the log.
 *
 * Writes are grouped into batches, one per log segment. A batch is handed to LMDB as one group of
 * asynchronous puts (one transaction, committed and synced on lmdb's write thread) at most
 * APPLY_DELAY_MS after its first write; a key written twice in a batch is put once. When the
 * transaction is synced, the batch's writes leave the overlay (unless rewritten since) and its log
 * segment is deleted. One batch is in LMDB's hands at a time; if its commit fails it is retried, and
 * the log keeps its writes meanwhile.
 */
export class Overlay {
  private readonly map = new Map<string, PendingWrite>();
  /**
   * The pending writes whose keys LMDB's key-hash index does not hold yet, by key: what a key-hash
   * range query must add to its index scan. Usually far fewer than all pending writes.
   */
  private readonly unindexed = new Map<string, PendingWrite>();
  private batch: PendingWrite[] = [];
  private batchStarted = 0;
  private batchNo: number;
  private bytes = 0;
  private applying: { list: PendingWrite[]; seq: number; started: number; done: Promise<void> } | null = null;
  private timer: NodeJS.Timeout | undefined;
  private immediate = false;
  private waiters: (() => void)[] = [];
  private stopped = false;
  /** Batches committed, and commits that failed (and were retried), for STATS. */
  batchesApplied = 0;
  applyFailures = 0;

  constructor(private readonly opts: OverlayOptions) {
    this.batchNo = opts.log.segment;
  }

  get size(): number {
    return this.map.size;
  }

  /** Bytes of records held (rewritten ones included until their batch is applied). */
  get pendingBytes(): number {
    return this.bytes;
  }

  /** Milliseconds since the oldest write that LMDB does not hold yet (0: none). */
  get lagMs(): number {
    const since = this.applying?.started ?? (this.batch.length > 0 ? this.batchStarted : 0);
    return since === 0 ? 0 : Date.now() - since;
  }

  get(k: string): PendingWrite | undefined {
    return this.map.get(k);
  }

  values(): IterableIterator<PendingWrite> {
    return this.map.values();
  }

  /** Pending writes of keys not yet in LMDB's key-hash index. */
  unindexedValues(): IterableIterator<PendingWrite> {
    return this.unindexed.values();
  }

  get unindexedCount(): number {
    return this.unindexed.size;
  }

  /**
   * Adds a write made by the store and links it to the pending write of its key, if any; `replaced`:
   * whether the key had a record before it (with no write pending, LMDB's: if none, this write's
   * batch indexes the key).
   */
  add(e: PendingWrite, replaced: boolean): void {
    const prev = this.map.get(e.k);
    e.batch = this.batchNo;
    // A rewrite within the batch takes over the index entry its predecessor would have written.
    e.newKey = prev === undefined ? !replaced : prev.newKey && prev.batch === e.batch;
    e.prev = prev;
    if (e.prev !== undefined) e.prev.next = e;
    this.map.set(e.k, e);
    // A rewrite of a key whose index entry is still in a batch on its way stays unindexed too.
    if (e.newKey || this.unindexed.has(e.k)) this.unindexed.set(e.k, e);
    if (this.batch.length === 0) this.batchStarted = Date.now();
    this.batch.push(e);
    this.bytes += e.body.length;
    this.schedule();
  }

  /** Takes back the newest write (its log append failed). */
  undo(e: PendingWrite): void {
    if (this.batch[this.batch.length - 1] === e) this.batch.pop();
    this.bytes -= e.body.length;
    if (this.map.get(e.k) !== e) return;
    // A predecessor still linked is not in LMDB yet (the link is cut when its batch commits).
    const prev = e.prev;
    if (prev !== undefined) {
      prev.next = undefined;
      this.map.set(e.k, prev);
    } else {
      this.map.delete(e.k);
    }
    // Still unindexed under the write it restores only if that write was (a new key's rewrite is).
    if (this.unindexed.get(e.k) === e) {
      if (prev !== undefined) this.unindexed.set(e.k, prev);
      else this.unindexed.delete(e.k);
    }
  }

  /** Whether new writes should wait for LMDB to catch up. */
  get overCap(): boolean {
    return this.bytes > MAX_PENDING_BYTES || this.map.size > MAX_PENDING_WRITES;
  }

  /** Resolves once the overlay is back under half its caps. */
  drained(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Hands everything pending to LMDB now and resolves once LMDB holds it. */
  async settle(): Promise<void> {
    for (;;) {
      if (this.applying !== null) await this.applying.done;
      else if (this.batch.length > 0) this.apply();
      else return;
    }
  }

  /** Stops scheduling; `settle()` still applies what is pending. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.applying !== null || this.batch.length === 0 || this.stopped) return;
    const big = this.batch.length >= APPLY_MAX_WRITES || this.bytes > MAX_PENDING_BYTES / 2;
    // The timer set for this batch applies it (and calls back here): no clock read per write.
    if (!big && this.timer !== undefined) return;
    const wait = big ? 0 : this.batchStarted + APPLY_DELAY_MS - Date.now();
    if (wait <= 0) {
      if (this.immediate) return;
      // Not inline: the write that got here is in the middle of a client's batch.
      this.immediate = true;
      setImmediate(() => {
        this.immediate = false;
        this.apply();
      });
    } else {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.schedule();
      }, wait);
      this.timer.unref();
    }
  }

  private apply(): void {
    if (this.applying !== null || this.batch.length === 0) return;
    try {
      this.opts.flush();
    } catch {
      // The store undid those writes and told their writers.
    }
    if (this.batch.length === 0) return;
    const list = this.batch;
    const started = this.batchStarted;
    const seq = this.opts.log.rotate();
    this.batch = [];
    this.batchNo = this.opts.log.segment;
    let finish!: () => void;
    const done = new Promise<void>((resolve) => (finish = resolve));
    this.applying = { list, seq, started, done };
    this.put(list, seq, finish);
  }

  private put(list: PendingWrite[], seq: number, finish: () => void): void {
    const { db, index } = this.opts;
    const commits: Promise<boolean>[] = [];
    let last: Promise<boolean> | undefined;
    const track = (p: Promise<boolean>): void => {
      if (p !== last) commits.push((last = p));
    };
    // The positions in `list` of the writes whose keys the index lacks.
    const fresh: number[] = [];
    for (let i = 0; i < list.length; i++) {
      const e = list[i] as PendingWrite;
      const next = e.next;
      // A later write of the same batch carries this key (and its index obligation).
      if (next !== undefined && next.batch === e.batch) continue;
      if (e.newKey) fresh.push(i);
      // Rewritten in a later batch: that batch puts the newer record.
      if (next === undefined) track(db.put(e.key, e.rec));
    }
    for (const i of keyHashOrder(list, fresh)) {
      const e = list[i] as PendingWrite;
      track(index.put(indexKey(e.rec, e.key), EMPTY));
    }
    Promise.all(commits).then(
      () => this.committed(list, seq, finish),
      (err: unknown) => {
        // lmdb attaches the real cause as a promise it rejects on its own: unhandled, that rejection
        // would end the process (a full disk made the node exit). Log it instead.
        const cause = (err as { commitError?: unknown } | null)?.commitError;
        if (cause instanceof Promise) cause.catch((why: unknown) => this.opts.logger.error({ err: why }, 'LMDB commit error'));
        this.applyFailures++;
        this.opts.logger.error({ err, writes: list.length }, 'LMDB commit failed; the write-ahead log keeps the writes; retrying');
        setTimeout(() => this.put(list, seq, finish), RETRY_MS).unref();
      },
    );
  }

  private committed(list: PendingWrite[], seq: number, finish: () => void): void {
    for (const e of list) {
      const next = e.next;
      if (next === undefined) this.map.delete(e.k);
      else next.prev = undefined;
      // The index now holds the key, whatever was written to it since.
      if (e.newKey) this.unindexed.delete(e.k);
      this.bytes -= e.body.length;
    }
    this.batchesApplied++;
    this.opts.log.remove(seq);
    this.applying = null;
    finish();
    if (this.waiters.length > 0 && this.bytes <= MAX_PENDING_BYTES / 2 && this.map.size <= MAX_PENDING_WRITES / 2) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w();
    }
    this.schedule();
  }
}

/**
 * `positions` (of writes in `list`) in the order of their keys' hashes, by a counting sort on the hashes'
 * top bits (about one position per bucket, so nearly sorted): the index's keys start with the key hash,
 * and LMDB inserts keys that come in its own order page by page, where keys in hash order (random)
 * land all over the index, each in a page of its own (measured: a third less work on LMDB's thread).
 */
function keyHashOrder(list: readonly PendingWrite[], positions: readonly number[]): Uint32Array {
  const n = positions.length;
  const bits = Math.min(16, 32 - Math.clz32(n));
  const shift = 32 - bits;
  const starts = new Uint32Array((1 << bits) + 1);
  const buckets = new Uint32Array(n);
  for (let j = 0; j < n; j++) {
    const e = list[positions[j] as number] as PendingWrite;
    const bucket = recordKeyHashHi(e.body, e.recOffset) >>> shift;
    buckets[j] = bucket;
    starts[bucket + 1] = (starts[bucket + 1] as number) + 1;
  }
  for (let b = 1; b < starts.length; b++) starts[b] = (starts[b] as number) + (starts[b - 1] as number);
  const order = new Uint32Array(n);
  for (let j = 0; j < n; j++) {
    const bucket = buckets[j] as number;
    order[starts[bucket] as number] = positions[j] as number;
    starts[bucket] = (starts[bucket] as number) + 1;
  }
  return order;
}

const EMPTY = Buffer.alloc(0);
