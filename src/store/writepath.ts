import type { Logger } from 'pino';
import { StorageError } from '../errors.js';
import { expected } from '../expected.js';
import type { Overlay, PendingWrite } from './overlay.js';
import type { WriteAheadLog } from './wal.js';

/** What a reply must wait for before it may be sent: null for nothing (see DESIGN.md section 4). */
export type Ack = Promise<void> | null;

/** A write this node acknowledged to its client, as replication publishes it. */
export interface AcknowledgedWrite {
  readonly key: Buffer;
  /** The record written (record.ts; a view of the pending write, which never changes). */
  readonly rec: Buffer;
}

export interface WritePathOptions {
  readonly log: WriteAheadLog;
  readonly overlay: Overlay;
  readonly logger: Logger;
  /** Takes a write's record out of the tree and the counts, putting back `restored` (undefined: nothing). */
  readonly onUndone: (e: PendingWrite, restored: Buffer | undefined) => void;
  /** LMDB's record under `key`: what an undone write restores when it replaced no pending write. */
  readonly readDurable: (key: Buffer) => Buffer | undefined;
}

/**
 * The write path behind the store (DESIGN.md section 4): a write made by the store is appended to the
 * log's buffer and put in the overlay at once, so every later read sees it. `flush()` writes the
 * buffered entries to the log file with one write, once per turn of the event loop; whoever
 * acknowledges writes waits for it (`flushed()`). Then, per `[storage] fsync`: "periodic"
 * acknowledges at once (the OS holds the write), "always" after the fdatasync that `add` returns as
 * its `Ack`. Acknowledged local writes are announced to `onAcknowledged` listeners. If the file
 * cannot take a flush (disk full), its writes are undone, newest first, and their waiters told.
 */
export class WritePath {
  /** Writes appended since the last flush, oldest first (undone if the flush fails). */
  private unflushed: PendingWrite[] = [];
  /** Log position after the newest local write. */
  private lastLocalEnd = 0;
  private flushScheduled = false;
  /** Acknowledgers waiting for the next flush (`flushed()`), told its outcome. */
  private flushWaiters: ((err: Error | undefined) => void)[] = [];
  private readonly listeners: ((writes: AcknowledgedWrite[]) => void)[] = [];
  private closed = false;
  /** Bound once: the flush that `scheduleFlush` runs, with no closure per write. */
  private readonly flushSoon = (): void => this.scheduledFlush();

  constructor(private readonly opts: WritePathOptions) {}

  /**
   * Appends `e` (built by the store, already in its tree and counts) to the log's buffer and the
   * overlay; `replaced`: whether its key had a record before it. Returns what its reply waits for.
   */
  add(e: PendingWrite, replaced: boolean): Ack {
    if (this.closed) throw new StorageError('store is closed');
    const { log, overlay } = this.opts;
    e.logEnd = log.append(e.body);
    overlay.add(e, replaced);
    this.unflushed.push(e);
    if (e.local) this.lastLocalEnd = e.logEnd;
    this.scheduleFlush();
    const durable = log.durableAfter(e.logEnd);
    if (!overlay.overCap) return durable;
    // LMDB is far behind (a slow disk): the reply waits until it catches up, which slows the writers.
    const drained = overlay.drained();
    return durable === null ? drained : Promise.all([durable, drained]).then(() => undefined);
  }

  /** What a reply that reflects every local write so far (DBSIZE, SCAN, HASH) must wait for. */
  acknowledgedAfter(): Ack {
    return this.opts.log.durableAfter(this.lastLocalEnd);
  }

  /** What a reply showing the pending write `e` must wait for. */
  ackOf(e: PendingWrite): Ack {
    // A write applied from another node is already durable where it was made, and the broker
    // redelivers it if we crash first: serving it need not wait for our disk.
    return e.local ? this.opts.log.durableAfter(e.logEnd) : null;
  }

  /** Told of local writes once they are acknowledged (replication publishes them). */
  onAcknowledged(listener: (writes: AcknowledgedWrite[]) => void): void {
    this.listeners.push(listener);
  }

  /** Writes made and not yet in the log file: a reply that shows any of them must wait for `flushed()`. */
  get hasUnflushed(): boolean {
    return this.unflushed.length > 0;
  }

  /**
   * Writes the log's buffered entries to its file (one write), then announces the local ones, and
   * settles every `flushed()` promise. If the file cannot take them (disk full), the writes are undone,
   * the waiters are told, and a StorageError is thrown.
   */
  flush(): void {
    const waiters = this.flushWaiters;
    this.flushWaiters = [];
    let failure: Error | undefined;
    try {
      this.writeOut();
    } catch (err) {
      failure = err instanceof Error ? err : new StorageError('write-ahead log append failed', { cause: err });
      throw err;
    } finally {
      for (const w of waiters) w(failure);
    }
  }

  /**
   * Resolves once the writes made so far are in the log file (rejects, with the StorageError, if they
   * could not be written and were undone). The flush runs once per turn of the event loop, after the
   * I/O callbacks: the connections that wrote in that turn share one write to the file.
   */
  flushed(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.flushWaiters.push((err) => (err === undefined ? resolve() : reject(err)));
      this.scheduleFlush();
    });
  }

  /** Flushes what is left and stops scheduling flushes; later writes are refused. */
  close(): void {
    try {
      this.flush();
    } catch (err) {
      this.opts.logger.error({ err }, 'write-ahead log append failed at close');
    }
    this.closed = true;
  }

  /** flush() without the waiters: the log write, undone on failure, then the announcements. */
  private writeOut(): void {
    if (this.unflushed.length === 0) return;
    const writes = this.unflushed;
    this.unflushed = [];
    try {
      this.opts.log.flush();
    } catch (err) {
      this.undo(writes);
      throw err;
    }
    if (this.listeners.length === 0) return;
    const local = writes.filter((w) => w.local);
    if (local.length === 0) return;
    const durable = this.acknowledgedAfter();
    if (durable === null) this.announce(local);
    else void expected(durable.then(() => this.announce(local)));
  }

  /**
   * An immediate, not a tick: a tick runs after each I/O callback, an immediate once after all of a
   * turn's, so the writes of every connection served in the turn go to the file together. Scheduled
   * from an I/O callback it costs no extra turn (and no extra epoll call).
   */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(this.flushSoon);
  }

  private scheduledFlush(): void {
    this.flushScheduled = false;
    if (this.closed) return;
    try {
      this.flush();
    } catch (err) {
      this.opts.logger.error({ err }, 'write-ahead log append failed');
    }
  }

  private announce(writes: PendingWrite[]): void {
    const acked = writes.map((w) => ({ key: w.key, rec: w.rec }));
    for (const listener of this.listeners) {
      try {
        listener(acked);
      } catch (err) {
        // The writes are in the log and acknowledged: a listener that fails (replication) must not undo that.
        this.opts.logger.error({ err }, 'a listener of acknowledged writes failed');
      }
    }
  }

  /** Takes back writes whose log append failed, newest first. */
  private undo(writes: PendingWrite[]): void {
    for (let i = writes.length - 1; i >= 0; i--) {
      const e = writes[i] as PendingWrite;
      // What it replaced: its predecessor, or (once that is in LMDB, or if there was none) LMDB's record.
      const restored = e.prev?.rec ?? this.opts.readDurable(e.key);
      this.opts.overlay.undo(e);
      this.opts.onUndone(e, restored);
    }
  }
}
