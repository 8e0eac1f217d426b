import type { Logger } from 'pino';
import { ErrorCode, MerkleKvError } from '../errors.js';
import { errorMessage, type Dialect, type Outcome } from '../protocol/dialect.js';
import type { Output } from '../protocol/output.js';
import { execute, type McContext } from './commands.js';
import { McParser, type McLimits, type McRequest } from './parser.js';

/** memcached's text protocol for one connection of the memcached listener (issue #12). */
export class McDialect implements Dialect {
  private readonly parser: McParser;
  private readonly queue: McRequest[] = [];
  private head = 0;
  private last = 'NULL';

  constructor(
    private readonly ctx: McContext,
    private readonly logger: Logger,
    limits: McLimits,
  ) {
    this.parser = new McParser(limits);
  }

  get lastCommand(): string {
    return this.last;
  }

  push(chunk: Buffer): void {
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    }
    for (const req of this.parser.push(chunk)) this.queue.push(req);
  }

  runNext(out: Output): Outcome | 'none' {
    const req = this.queue[this.head];
    if (req === undefined) return 'none';
    this.head++;
    this.last = 'command' in req ? req.command : req.kind;
    out.begin();
    this.ctx.counters.commands++;
    try {
      return execute(req, this.ctx, out);
    } catch (err) {
      out.rollback();
      out.raw(this.failure(err));
      return undefined;
    }
  }

  /** memcached reports what went wrong on its side as SERVER_ERROR; a store past memory_limit_mb as memcached out of memory. */
  failure(err: unknown): Buffer {
    this.ctx.counters.errors++;
    if (err instanceof MerkleKvError && err.code === ErrorCode.StorageFull) {
      this.ctx.counters.storeNoMemory++;
      return Buffer.from('SERVER_ERROR out of memory storing object\r\n');
    }
    return Buffer.from(`SERVER_ERROR ${errorMessage(err, this.logger).replace(/[\r\n]+/g, ' ')}\r\n`);
  }
}
