/** A reply that may only be sent once what it depends on has settled (a write's `Ack`, see Store). */
export interface Deferred {
  readonly after: Promise<unknown>;
  readonly bytes: Buffer;
}

export type Part = Buffer | Deferred;

interface Range {
  start: number;
  end: number;
  after: Promise<unknown> | null;
}

const CR = 0x0d;
const LF = 0x0a;

// Reply prefixes are a handful of constants ('VALUE ', 'PONG ', ...): copying bytes beats encoding.
const prefixes = new Map<string, Buffer>();
function asciiBytes(text: string): Buffer {
  let b = prefixes.get(text);
  if (b === undefined) {
    b = Buffer.from(text, 'latin1');
    if (prefixes.size < 64) prefixes.set(text, b);
  }
  return b;
}

/**
 * The one place an `ERROR` reply is built (DESIGN.md section 2): `ERROR <message>` and CRLF, the message
 * kept to one line whatever it holds.
 */
export function errorReply(message: string): Buffer {
  return Buffer.from(`ERROR ${message.replace(/[\r\n]+/g, ' ')}\r\n`, 'utf8');
}

/**
 * Collects the replies to one batch of requests into one buffer, so a batch costs one socket write
 * (memcached answers each pipelined request with its own `sendmsg`). A reply that depends on a commit
 * becomes a `Deferred` part; replies before it can go out at once. Consecutive replies waiting for the
 * same commit (LMDB hands every put of one transaction the same promise) share one part.
 */
export class Output {
  private buf = Buffer.allocUnsafe(16 * 1024);
  private len = 0;
  /** Start of the reply being written, for `dependOn` and `rollback`. */
  private replyStart = 0;
  /** Deferred ranges of `buf`, in order; bytes between them are plain. */
  private deferred: Range[] = [];

  /** Call before each request's reply. */
  begin(): void {
    this.replyStart = this.len;
  }

  /** The reply written since `begin()` must wait for `after` (no-op for null). */
  dependOn(after: Promise<unknown> | null): void {
    if (after === null) return;
    const last = this.deferred[this.deferred.length - 1];
    if (last !== undefined && last.after === after && last.end === this.replyStart) last.end = this.len;
    else this.deferred.push({ start: this.replyStart, end: this.len, after });
  }

  /** Discards everything written since the last `take()` (the batch's writes could not be logged). */
  discard(): void {
    this.len = this.replyStart = 0;
    this.deferred = [];
  }

  /** Discards what was written since `begin()` (a failed command writes an error instead). */
  rollback(): void {
    this.len = this.replyStart;
  }

  /** Writes ASCII text and CRLF. */
  line(text: string): void {
    const n = text.length;
    this.ensure(n + 2);
    // Most replies are a few letters (OK, DELETED, NOT_FOUND): storing their bytes beats a call into
    // Buffer#write, and Buffer's methods are slow to call from optimised code (store/record.ts, writeRecord).
    if (n <= 32) {
      const buf = this.buf;
      const at = this.len;
      for (let i = 0; i < n; i++) buf[at + i] = text.charCodeAt(i);
      this.len += n;
    } else {
      this.len += this.buf.write(text, this.len, 'latin1');
    }
    this.crlf();
  }

  /** Writes `prefix`, the bytes, an optional suffix and CRLF: `VALUE <v>`, `<k> NOT_FOUND`, `ECHO <msg>`. */
  bytesLine(prefix: string, bytes: Buffer, suffix = ''): void {
    this.ensure(prefix.length + bytes.length + suffix.length + 2);
    if (prefix !== '') this.put(asciiBytes(prefix));
    this.put(bytes);
    if (suffix !== '') this.len += this.buf.write(suffix, this.len, 'latin1');
    this.crlf();
  }

  /** Writes a binary reply: `BIN <length>`, CRLF, the bytes, CRLF (anti-entropy's internal commands). */
  binary(bytes: Buffer): void {
    this.line(`BIN ${bytes.length}`);
    this.ensure(bytes.length + 2);
    this.len += bytes.copy(this.buf, this.len);
    this.crlf();
  }

  /** Writes bytes as they are (a reply made elsewhere, a memcached data block). */
  raw(bytes: Buffer): void {
    this.ensure(bytes.length);
    this.len += bytes.copy(this.buf, this.len);
  }

  /** Writes an `ERROR` reply (errorReply). */
  error(message: string): void {
    const reply = errorReply(message);
    this.ensure(reply.length);
    this.len += reply.copy(this.buf, this.len);
  }

  /** Writes UTF-8 text and CRLF. */
  utf8Line(text: string): void {
    this.ensure(Buffer.byteLength(text) + 2);
    this.len += this.buf.write(text, this.len, 'utf8');
    this.crlf();
  }

  /** Bytes written since the last `take()`. */
  get size(): number {
    return this.len;
  }

  /** Hands over everything written so far, in order, and starts afresh. */
  take(): Part[] {
    if (this.len === 0) return [];
    // The socket keeps what it is given until written, and the scratch buffer is reused: copy once,
    // then hand out views of the copy.
    const copy = Buffer.allocUnsafe(this.len);
    this.buf.copy(copy, 0, 0, this.len);
    // A batch of large replies grew the scratch buffer: do not keep that much for good.
    if (this.buf.length > 1024 * 1024) this.buf = Buffer.allocUnsafe(16 * 1024);
    if (this.deferred.length === 0) {
      this.len = this.replyStart = 0;
      return [copy];
    }
    const parts: Part[] = [];
    let plainStart = 0;
    for (const r of this.deferred) {
      if (r.start > plainStart) parts.push(copy.subarray(plainStart, r.start));
      parts.push({ after: r.after as Promise<unknown>, bytes: copy.subarray(r.start, r.end) });
      plainStart = r.end;
    }
    if (this.len > plainStart) parts.push(copy.subarray(plainStart, this.len));
    this.deferred = [];
    this.len = this.replyStart = 0;
    return parts;
  }

  private crlf(): void {
    this.buf[this.len] = CR;
    this.buf[this.len + 1] = LF;
    this.len += 2;
  }

  /** Appends bytes there is room for. */
  private put(bytes: Buffer): void {
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  }

  private ensure(extra: number): void {
    if (this.len + extra <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + extra));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
}
