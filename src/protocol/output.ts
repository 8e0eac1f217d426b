/** A reply that may only be sent once a commit it depends on has settled (see Store.readPending). */
export interface Deferred {
  readonly after: Promise<unknown>;
  readonly bytes: Buffer;
}

export type Part = Buffer | Deferred;

const CRLF = 0x0d0a;

/**
 * Collects the replies to one batch of requests into a single buffer, so a batch costs one socket
 * write (memcached answers each pipelined request with its own `sendmsg`). A reply that depends on a
 * commit is cut out as a `Deferred` part; everything before it can still go out at once.
 */
export class Output {
  private buf = Buffer.allocUnsafe(16 * 1024);
  private len = 0;
  /** Start of the reply being written, for `dependOn`. */
  private replyStart = 0;
  /** Start of the bytes not yet moved into `parts`. */
  private segmentStart = 0;
  private parts: Part[] = [];

  /** Call before each request's reply. */
  begin(): void {
    this.replyStart = this.len;
  }

  /** The reply written since `begin()` must wait for `after` (no-op for null). */
  dependOn(after: Promise<unknown> | null): void {
    if (after === null) return;
    if (this.replyStart > this.segmentStart) this.parts.push(this.copy(this.segmentStart, this.replyStart));
    this.parts.push({ after, bytes: this.copy(this.replyStart, this.len) });
    this.len = this.segmentStart = this.replyStart = 0;
  }

  /** Discards what was written since `begin()` (a failed command writes an error instead). */
  rollback(): void {
    this.len = this.replyStart;
  }

  /** Writes ASCII text and CRLF. */
  line(text: string): void {
    this.ensure(text.length + 2);
    this.len += this.buf.write(text, this.len, 'latin1');
    this.crlf();
  }

  /** Writes `prefix`, the bytes, and CRLF: `VALUE <v>`, `<k> <v>`, `ECHO <msg>`. */
  bytesLine(prefix: string, bytes: Buffer, suffix = ''): void {
    this.ensure(prefix.length + bytes.length + suffix.length + 2);
    this.len += this.buf.write(prefix, this.len, 'latin1');
    this.len += bytes.copy(this.buf, this.len);
    if (suffix !== '') this.len += this.buf.write(suffix, this.len, 'latin1');
    this.crlf();
  }

  /** Writes UTF-8 text and CRLF (error messages may quote keys). */
  utf8Line(text: string): void {
    this.ensure(Buffer.byteLength(text) + 2);
    this.len += this.buf.write(text, this.len, 'utf8');
    this.crlf();
  }

  get isEmpty(): boolean {
    return this.len === 0 && this.parts.length === 0;
  }

  /** Hands over everything written so far, in order, and starts afresh. */
  take(): Part[] {
    const parts = this.parts;
    if (this.len > this.segmentStart) parts.push(this.copy(this.segmentStart, this.len));
    this.parts = [];
    this.len = this.segmentStart = this.replyStart = 0;
    if (this.buf.length > 1024 * 1024) this.buf = Buffer.allocUnsafe(16 * 1024);
    return parts;
  }

  private crlf(): void {
    this.buf.writeUInt16BE(CRLF, this.len);
    this.len += 2;
  }

  /** The socket keeps what it is given until written; the scratch buffer is reused, so copy out. */
  private copy(start: number, end: number): Buffer {
    const out = Buffer.allocUnsafe(end - start);
    this.buf.copy(out, 0, start, end);
    return out;
  }

  private ensure(extra: number): void {
    if (this.len + extra <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + extra));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
}
