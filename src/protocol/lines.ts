/** Returned by `LineReader.next()` when a line exceeds the limit; the connection must then close. */
export const LINE_TOO_LONG = Symbol('line too long');

/**
 * Splits a byte stream into `\n`-terminated lines, keeping its state across chunks. It knows no socket:
 * feed it with `push()`, pull lines with `next()` at the pace the caller can answer them.
 *
 * A line inside one chunk is returned as a view of that chunk (no copy); only a line split across chunks
 * is joined. A partial line longer than `maxLine` is reported as soon as it is seen, so a client cannot
 * make the server buffer an endless line.
 */
export class LineReader {
  private chunk: Buffer = EMPTY;
  private pos = 0;
  private partial: Buffer[] = [];
  private partialLength = 0;

  constructor(private readonly maxLine: number) {}

  push(chunk: Buffer): void {
    // Unread lines remain when the caller pushes before draining: keep them ahead of the new bytes.
    // (`partial` is empty then: it only fills once a chunk is used up without a newline.)
    this.chunk = this.pos < this.chunk.length ? Buffer.concat([this.chunk.subarray(this.pos), chunk]) : chunk;
    this.pos = 0;
  }

  /** The next complete line without its `\n`, `undefined` if none is complete yet, or LINE_TOO_LONG. */
  next(): Buffer | undefined | typeof LINE_TOO_LONG {
    const nl = this.chunk.indexOf(NEWLINE, this.pos);
    if (nl === -1) {
      this.keepRest();
      return this.partialLength > this.maxLine ? LINE_TOO_LONG : undefined;
    }
    let line = this.chunk.subarray(this.pos, nl);
    this.pos = nl + 1;
    if (this.partial.length > 0) {
      this.partial.push(line);
      line = Buffer.concat(this.partial, this.partialLength + line.length);
      this.partial = [];
      this.partialLength = 0;
    }
    return line.length > this.maxLine ? LINE_TOO_LONG : line;
  }

  /** Whether bytes of an unterminated line are held (used at end of input). */
  get hasPartial(): boolean {
    return this.partialLength > 0 || this.pos < this.chunk.length;
  }

  /** Takes the held bytes of an unterminated line, as if a `\n` had followed them. */
  takePartial(): Buffer {
    this.keepRest();
    const line = Buffer.concat(this.partial, this.partialLength);
    this.partial = [];
    this.partialLength = 0;
    return line;
  }

  private keepRest(): void {
    if (this.pos < this.chunk.length) {
      const rest = this.chunk.subarray(this.pos);
      this.partial.push(rest);
      this.partialLength += rest.length;
    }
    this.chunk = EMPTY;
    this.pos = 0;
  }
}

const NEWLINE = 0x0a;
const EMPTY = Buffer.alloc(0);
