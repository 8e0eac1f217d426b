import type { Logger } from 'pino';
import { ErrorCode, ProtocolError } from '../errors.js';
import { Args } from '../protocol/args.js';
import { decodeLine } from '../protocol/decode.js';
import { errorMessage, type Dialect, type Outcome } from '../protocol/dialect.js';
import { LINE_TOO_LONG, LineReader } from '../protocol/lines.js';
import { errorReply, type Output } from '../protocol/output.js';
import { roleAllows, Session, type Access } from '../security/auth.js';
import type { Context } from './context.js';
import { COMMAND_NAMES, PARSERS, type CommandEntry } from './index.js';

/**
 * MerkleKV's line protocol (DESIGN.md section 2) for one connection: lines framed by LineReader,
 * decoded, checked against what the connection has proven (Session), counted per command, run.
 */
export class LineDialect implements Dialect {
  private readonly reader: LineReader;
  /** What this client has proven (AUTH, the anti-entropy handshake). */
  private readonly session: Session;
  /** The command of the request being run (CommandEntry.id; -1: not known yet), for its counters. */
  private command = -1;
  /** Reset for each request (Args.reset). */
  private readonly args: Args;

  constructor(
    private readonly ctx: Context,
    private readonly logger: Logger,
    maxLineBytes: number,
  ) {
    this.reader = new LineReader(maxLineBytes);
    this.session = new Session(ctx.auth);
    this.args = new Args(EMPTY, 0, ctx.limits, '', '');
  }

  get lastCommand(): string {
    return COMMAND_NAMES[this.command] ?? 'NULL';
  }

  push(chunk: Buffer): void {
    this.reader.push(chunk);
  }

  runNext(out: Output, ended: boolean): Outcome | 'none' {
    let line = this.reader.next();
    if (line === undefined) {
      if (!(ended && this.reader.hasPartial)) return 'none';
      // Input ended without a final newline: run what was sent, as `printf 'GET k' | nc` expects.
      line = this.reader.takePartial();
    }
    if (line === LINE_TOO_LONG) {
      // Framing is lost: the rest of the line cannot be told from the next request.
      this.reply(out, new ProtocolError('line too long', { code: ErrorCode.LineTooLong }));
      return 'close';
    }
    return this.runLine(line, out);
  }

  failure(err: unknown): Buffer {
    this.ctx.stats.errors++;
    return errorReply(errorMessage(err, this.logger));
  }

  private runLine(line: Buffer, out: Output): Outcome {
    const ctx = this.ctx;
    ctx.stats.commands++;
    this.command = -1;
    out.begin();
    try {
      return decodeLine(line, PARSERS, this.args, this.dispatch, out);
    } catch (err) {
      out.rollback();
      if (this.command !== -1) (ctx.stats.failures[this.command] as number)++;
      this.reply(out, err);
      return undefined;
    }
  }

  /**
   * Counts the command, refuses it if this connection may not run it (DESIGN.md section 7) before its
   * arguments are parsed, then runs it. Made once per connection: decodeLine hands it every request.
   */
  private readonly dispatch = (entry: CommandEntry, args: Args, out: Output): Outcome => {
    this.command = entry.id;
    (this.ctx.stats.calls[entry.id] as number)++;
    this.admit(entry.access, args.command);
    return entry.run(args, this.ctx, out, this.session);
  };

  private admit(access: Access, word: string): void {
    if (access === 'public') return;
    if (access === 'peer') {
      // Peers prove the cluster secret instead of a password (AE.HELLO); a client's role does not reach AE.*.
      if (!this.session.peer) throw new ProtocolError(`${word} is for anti-entropy peers, which prove the cluster secret first (AE.HELLO)`);
      return;
    }
    const { role, user } = this.session;
    if (role === undefined) throw new ProtocolError('NOAUTH Authentication required');
    if (access === 'admin' && !this.ctx.adminCommands) {
      throw new ProtocolError(`${word} is disabled on this node (security.admin_commands = false)`);
    }
    if (!roleAllows(role, access)) throw new ProtocolError(`NOPERM user ${user} (role ${role}) may not run ${word}`);
  }

  /** A request's error as its `ERROR` reply. */
  private reply(out: Output, err: unknown): void {
    out.begin();
    out.raw(this.failure(err));
  }
}

const EMPTY = Buffer.alloc(0);
