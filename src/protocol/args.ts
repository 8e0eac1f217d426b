import { ProtocolError } from '../errors.js';
import { checkKey, checkValue, type Limits } from '../rules.js';

const SPACE = 0x20;

/**
 * The arguments of one request line, after the command word. Words are separated by spaces; a value
 * (SET, APPEND, PREPEND) is everything after the single space that follows the key (DESIGN.md section 2).
 * Keys and values are views of the line, not copies.
 */
export class Args {
  constructor(
    private line: Buffer,
    private pos: number,
    readonly limits: Limits,
    /** Upper-case command word, for messages. */
    public command: string,
    /** What the command requires, completing "<CMD> command requires ...". */
    private requires: string,
    /** Where the arguments end in `line` (the line's length unless it is trimmed). */
    private stop = line.length,
  ) {}

  /**
   * Points this at another request's arguments: `line[pos..stop)`. A connection keeps one Args and
   * resets it per request rather than making one (parsers keep views of the line, never the Args).
   */
  reset(line: Buffer, pos: number, stop: number, command: string, requires: string): this {
    this.line = line;
    this.pos = pos;
    this.stop = stop;
    this.command = command;
    this.requires = requires;
    return this;
  }

  /** Whether no word is left. */
  get done(): boolean {
    this.skipSpaces();
    return this.pos >= this.stop;
  }

  /** The next word, or undefined at the end. */
  word(): Buffer | undefined {
    this.skipSpaces();
    const line = this.line;
    const stop = this.stop;
    if (this.pos >= stop) return undefined;
    let end = this.pos;
    while (end < stop && line[end] !== SPACE) end++;
    const w = line.subarray(this.pos, end);
    this.pos = end;
    return w;
  }

  /** The next word, checked as a key; a missing key is an arity error. */
  key(): Buffer {
    const k = this.word();
    if (k === undefined) throw this.usage();
    // decodeRequest checked the whole line's UTF-8.
    return checkKey(k, this.limits, true);
  }

  /** Everything after the space that follows the previous word, checked as a value; must not be empty. */
  value(): Buffer {
    if (this.pos + 1 >= this.stop) throw this.usage();
    const v = this.line.subarray(this.pos + 1, this.stop);
    this.pos = this.stop;
    return checkValue(v, this.limits);
  }

  /** Everything after the space that follows the command word or previous word, possibly empty. */
  rest(): Buffer {
    const r = this.line.subarray(Math.min(this.pos + 1, this.stop), this.stop);
    this.pos = this.stop;
    return r;
  }

  /** Throws an arity error if any word is left. */
  end(): void {
    if (!this.done) throw this.usage();
  }

  usage(): ProtocolError {
    return new ProtocolError(`${this.command} command requires ${this.requires}`);
  }

  private skipSpaces(): void {
    while (this.pos < this.stop && this.line[this.pos] === SPACE) this.pos++;
  }
}
