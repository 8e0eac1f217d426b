import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { ClientInfo, Context } from '../commands/context.js';
import type { Dialect, Outcome } from '../protocol/dialect.js';
import type { Output, Part } from '../protocol/output.js';

export interface ConnectionOptions {
  readonly ctx: Context;
  /** Numbers the server's connections (CLIENT LIST). */
  readonly id: number;
  /** The client's `host:port`. */
  readonly address: string;
  /** Shared by all connections: a batch is built and taken synchronously, so one scratch buffer serves. */
  readonly out: Output;
  readonly logger: Logger;
  /** The wire protocol this connection speaks (its own instance: it holds the connection's parser state). */
  readonly dialect: Dialect;
  /** Requests run per batch before the connection yields to others; bounds the work one read causes. */
  readonly maxBatch: number;
  /** Close after this long without a request (0: never). */
  readonly idleTimeoutMs: number;
  /** Close a client that has not read its replies for this long. */
  readonly drainTimeoutMs: number;
  readonly onClose: (conn: Connection) => void;
  /** The listener's own counts (memcached's `stats` reports them per listener). */
  readonly traffic: Traffic;
}

/** What one listener's connections read, wrote, and how often a batch stopped at maxBatch to let others run. */
export class Traffic {
  bytesIn = 0;
  bytesOut = 0;
  yields = 0;
}

/**
 * One client. Reads a chunk, runs every complete request in it (up to `maxBatch`), and sends the replies
 * in request order with one write. While replies wait for a commit or for the client to read, the
 * stream is paused: a connection never has more than one batch of requests in hand.
 */
export class Connection implements ClientInfo {
  readonly openedAt = Date.now();
  private idle: NodeJS.Timeout | undefined;
  /** When the last bytes came in; the idle timer checks this rather than being re-armed per read. */
  lastActivity = Date.now();
  private busy = false;
  private peerEnded = false;
  private closing = false;
  private closed = false;
  private ending = false;
  /** `opts.idleTimeoutMs`, until a config reload changes it (setIdleTimeout). */
  private idleTimeoutMs: number;

  constructor(
    private readonly stream: Duplex,
    private readonly opts: ConnectionOptions,
  ) {
    this.idleTimeoutMs = opts.idleTimeoutMs;
    if (opts.idleTimeoutMs > 0) this.armIdle(opts.idleTimeoutMs);
    stream.on('data', (chunk: Buffer) => {
      this.opts.ctx.stats.bytesIn += chunk.length;
      this.opts.traffic.bytesIn += chunk.length;
      if (this.ending) return; // we have said goodbye: read only to see the peer's end
      this.lastActivity = Date.now();
      this.opts.dialect.push(chunk);
      this.pump();
    });
    stream.on('end', () => {
      this.peerEnded = true;
      this.pump();
    });
    stream.on('error', (err) => this.opts.logger.debug({ err }, 'connection error'));
    stream.on('close', () => this.onClosed());
  }

  get id(): number {
    return this.opts.id;
  }

  get address(): string {
    return this.opts.address;
  }

  get lastCommand(): string {
    return this.opts.dialect.lastCommand;
  }

  /** Stops reading, answers what was already received, then closes (graceful shutdown). */
  shutdown(): void {
    if (this.closed) return;
    this.closing = true;
    this.stream.pause();
    this.pump();
  }

  destroy(): void {
    this.stream.destroy();
  }

  private pump(): void {
    if (this.busy || this.closed || this.ending) return;
    const out = this.opts.out;
    const started = performance.now();
    let count = 0;
    let outcome: Outcome;
    // A batch also ends once its replies fill MAX_BATCH_OUTPUT_BYTES: a client that asks for many large
    // values and does not read them must not make the server build them all at once.
    while (count < this.opts.maxBatch && outcome === undefined && out.size < MAX_BATCH_OUTPUT_BYTES) {
      const next = this.opts.dialect.runNext(out, this.peerEnded);
      if (next === 'none') break;
      count++;
      outcome = next;
    }
    const more = count === this.opts.maxBatch || out.size >= MAX_BATCH_OUTPUT_BYTES;
    if (more) this.opts.traffic.yields++;
    const parts = out.take();
    // After a barrier the requests left unread still count as more input to come.
    const finished = outcome === 'close' || ((this.peerEnded || this.closing) && !more && outcome !== 'barrier');
    if (count > 0 && this.opts.ctx.store.hasUnflushed) {
      // The replies show writes not yet in the log: they go out once the turn's flush has put them there.
      this.hold();
      this.opts.ctx.store
        .flushed()
        .then(
          () => this.release(this.deliver(parts, started, count), finished, more),
          (err: unknown) => this.release(this.deliver(this.failures(err, count), started, count), finished, more),
        )
        .catch((err: unknown) => this.fail(err));
      return;
    }
    const waiting = this.deliver(parts, started, count);
    // Sent, and nothing else to do for this batch: keep reading.
    if (waiting === undefined && !finished && !more && outcome !== 'barrier') return;
    this.hold();
    this.release(waiting ?? SETTLED, finished, more);
  }

  /**
   * Sends a batch's replies and observes its latency: at once when none waits for a commit (undefined,
   * or the wait for the client to read them), else once the commits have settled.
   */
  private deliver(parts: Part[], started: number, count: number): Promise<void> | undefined {
    const stats = this.opts.ctx.stats;
    if (!parts.every(isBuffer)) return this.send(parts).then(() => stats.observeLatency((performance.now() - started) / 1000, count));
    if (count > 0) stats.observeLatency((performance.now() - started) / 1000, count);
    return this.write(parts) ? undefined : this.drained();
  }

  /** While a batch's replies wait, the connection reads nothing more: it never holds two batches. */
  private hold(): void {
    this.busy = true;
    this.stream.pause();
  }

  /** Once `waiting` (the batch's replies) settles: read on, finish, or give up on a client that failed. */
  private release(waiting: Promise<void> | undefined, finished: boolean, more: boolean): void {
    if (waiting === undefined) return this.next(finished, more);
    waiting.then(
      () => this.next(finished, more),
      (err: unknown) => this.fail(err),
    );
  }

  private fail(err: unknown): void {
    this.opts.logger.debug({ err }, 'closing connection');
    this.stream.destroy();
  }

  private next(finished: boolean, more: boolean): void {
    this.busy = false;
    if (finished) return this.finish();
    if (!this.closing) this.stream.resume();
    // Input may have ended, or shutdown begun, while this batch waited.
    if (more) setImmediate(() => this.pump());
    else this.pump();
  }

  /**
   * The batch's replies when its writes could not be put into the write-ahead log (disk full): the store
   * has undone them, so every reply of the batch becomes that error. Replies that showed those writes
   * must not go out, and the client still gets one reply per request.
   */
  private failures(err: unknown, count: number): Buffer[] {
    return new Array<Buffer>(count).fill(this.opts.dialect.failure(err));
  }

  /**
   * Sends parts in order. Plain replies ahead of the first deferred one go out at once; the rest wait
   * until their commits settle (LMDB commits in order, so they settle together) and go out in one
   * write, a failed commit's reply replaced by an ERROR line.
   */
  private async send(parts: Part[]): Promise<void> {
    let first = 0;
    while (first < parts.length && isBuffer(parts[first] as Part)) first++;
    if (first > 0 && !this.write(parts.slice(0, first) as Buffer[])) await this.drained();
    if (first === parts.length) return;
    const rest = parts.slice(first);
    const settled = await Promise.allSettled(rest.map((p) => (isBuffer(p) ? SETTLED : p.after)));
    const out = rest.map((p, i) => {
      const s = settled[i];
      if (isBuffer(p) || s?.status === 'fulfilled') return isBuffer(p) ? p : p.bytes;
      return this.opts.dialect.failure(s?.reason);
    });
    if (!this.write(out)) await this.drained();
  }

  /** Writes buffers as one burst; false when the stream wants the caller to wait for 'drain'. */
  private write(buffers: Buffer[]): boolean {
    if (this.closed || buffers.length === 0) return true;
    // Small replies are cheaper joined than written one by one (each write allocates a request).
    const data = buffers.length === 1 ? (buffers[0] as Buffer) : Buffer.concat(buffers);
    this.opts.ctx.stats.bytesOut += data.length;
    this.opts.traffic.bytesOut += data.length;
    return this.stream.write(data);
  }

  private drained(): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error('client did not read its replies in time'));
      }, this.opts.drainTimeoutMs);
      const onDrain = (): void => {
        cleanup();
        resolve();
      };
      const onClose = (): void => {
        cleanup();
        reject(new Error('connection closed'));
      };
      const cleanup = (): void => {
        clearTimeout(timer);
        this.stream.off('drain', onDrain);
        this.stream.off('close', onClose);
      };
      this.stream.on('drain', onDrain);
      this.stream.on('close', onClose);
    });
  }

  private finish(): void {
    if (this.ending) return;
    this.ending = true;
    this.stream.end();
    // Reading on is how the peer's end is noticed, which lets the stream close.
    this.stream.resume();
    // A peer that never closes its side must not keep the connection (and its slot) forever.
    setTimeout(() => this.stream.destroy(), LINGER_MS).unref();
  }

  /** Closes the connection once idle this long from now on (0: never); counted from its last bytes in. */
  setIdleTimeout(ms: number): void {
    this.idleTimeoutMs = ms;
    clearTimeout(this.idle);
    if (ms > 0 && !this.closed) this.armIdle(Math.max(0, ms - (Date.now() - this.lastActivity)));
  }

  private onIdle(): void {
    if (this.closed || this.idleTimeoutMs === 0) return;
    const quiet = Date.now() - this.lastActivity;
    if (this.busy || quiet < this.idleTimeoutMs) {
      // Active since the timer was armed, or waiting on a commit or the client: check again later.
      this.armIdle(this.busy ? this.idleTimeoutMs : this.idleTimeoutMs - quiet);
      return;
    }
    this.opts.logger.debug('closing idle connection');
    this.stream.destroy();
  }

  private armIdle(ms: number): void {
    this.idle = setTimeout(() => this.onIdle(), ms);
    this.idle.unref();
  }

  private onClosed(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.idle);
    this.opts.onClose(this);
  }
}

const LINGER_MS = 5000;
/** Replies one batch may build before they are written (one large value still goes whole). */
const MAX_BATCH_OUTPUT_BYTES = 4 * 1024 * 1024;
const SETTLED = Promise.resolve();

function isBuffer(part: Part): part is Buffer {
  return Buffer.isBuffer(part);
}
