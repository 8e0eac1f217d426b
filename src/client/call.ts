import type { Connection, Sent } from './connection.js';
import { ReplyError, TimeoutError } from './errors.js';
import type { Parse } from './parse.js';

/** A request of any reply type, as the client's queues hold it. */
export interface Pending extends Sent {
  readonly word: string;
  readonly done: boolean;
  connection: Connection | undefined;
}

/**
 * One request from the call to its settling: its reply parsed (an `ERROR` line becomes a ReplyError,
 * unless the caller wants the lines as they are), or its failure, or its timeout. Settles once.
 */
export class Call<T> implements Pending {
  /** The command word, upper case: for errors, never the arguments (AUTH's are a password). */
  readonly word: string;
  /** Where it was sent; undefined while it waits for a connection. */
  connection: Connection | undefined;
  private settled = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly line: string,
    private readonly parse: Parse<T>,
    /** `ERROR ...` is a reply like any other (client.command). */
    private readonly errorsAsReplies: boolean,
    private readonly resolve: (value: T) => void,
    private readonly reject: (err: Error) => void,
  ) {
    const space = line.indexOf(' ');
    this.word = (space === -1 ? line : line.slice(0, space)).toUpperCase();
  }

  get done(): boolean {
    return this.settled;
  }

  /** Calls `expire` after `ms` (0: never) unless it has settled by then. */
  deadline(ms: number, expire: (call: Pending, err: TimeoutError) => void): void {
    if (ms <= 0) return;
    this.timer = setTimeout(() => {
      if (this.settled) return;
      const err = new TimeoutError(`${this.word} timed out after ${ms} ms`, ms);
      this.fail(err);
      expire(this, err);
    }, ms);
  }

  reply(lines: string[]): void {
    if (!this.settle()) return;
    const first = lines[0] ?? '';
    if (!this.errorsAsReplies && (first === 'ERROR' || first.startsWith('ERROR '))) {
      this.reject(new ReplyError(first.slice(6), this.word));
      return;
    }
    let value: T;
    try {
      value = this.parse(lines);
    } catch (err) {
      this.reject(err as Error);
      return;
    }
    this.resolve(value);
  }

  fail(err: Error): void {
    if (this.settle()) this.reject(err);
  }

  /** Marks it settled; false if it was already. */
  private settle(): boolean {
    if (this.settled) return false;
    this.settled = true;
    clearTimeout(this.timer);
    return true;
  }
}
