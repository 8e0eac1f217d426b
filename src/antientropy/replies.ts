import { ProtocolError } from '../errors.js';
import { MAX_REPLY_BYTES } from './wire.js';

/** One reply from a peer: a text line (without its line end) or the payload of a `BIN` frame. */
export type Reply = { readonly line: string } | { readonly bin: Buffer };

/** A `BIN` frame may hold at most one record past the reply cap; anything far beyond is refused. */
export const MAX_FRAME = MAX_REPLY_BYTES + 80 * 1024 * 1024;
/** A text reply longer than this is refused (the longest, ROOT, is under 400 bytes). */
export const MAX_REPLY_LINE = 64 * 1024;

/**
 * Splits the bytes a peer sends into replies: lines ending in LF (CR LF or LF), and binary frames
 * `BIN <length>\r\n<length bytes>\r\n`. It knows no socket: `push()` takes whatever arrived, in any
 * pieces, and returns the replies it completes. Anything malformed throws a ProtocolError, after
 * which the parser must not be used again (a peer that breaks framing is disconnected).
 *
 * A large frame arrives in many chunks: they are held and joined once, when the frame is complete,
 * not chunk by chunk.
 */
export class ReplyParser {
  private buf: Buffer = Buffer.alloc(0);
  private chunks: Buffer[] = [];
  /** Bytes in `buf` and `chunks`; and how many are needed before parsing can go on. */
  private held = 0;
  private need = 0;

  push(chunk: Buffer): Reply[] {
    this.chunks.push(chunk);
    this.held += chunk.length;
    if (this.held < this.need) return [];
    this.buf = this.chunks.length === 1 && this.buf.length === 0 ? chunk : Buffer.concat([this.buf, ...this.chunks]);
    this.chunks = [];
    this.need = 0;
    const out: Reply[] = [];
    let at = 0;
    for (;;) {
      const nl = this.buf.indexOf(0x0a, at);
      if (nl === -1) {
        if (this.buf.length - at > MAX_REPLY_LINE) throw new ProtocolError('peer sent an overlong line');
        break;
      }
      const line = this.buf.toString('utf8', at, nl > at && this.buf[nl - 1] === 0x0d ? nl - 1 : nl);
      if (!line.startsWith('BIN ')) {
        out.push({ line });
        at = nl + 1;
        continue;
      }
      const length = /^BIN (0|[1-9][0-9]{0,9})$/.test(line) ? Number(line.slice(4)) : -1;
      if (length < 0 || length > MAX_FRAME) throw new ProtocolError('peer sent a malformed BIN frame');
      const start = nl + 1;
      if (this.buf.length < start + length + 2) {
        this.need = start + length + 2 - at;
        break;
      }
      if (this.buf[start + length] !== 0x0d || this.buf[start + length + 1] !== 0x0a) {
        throw new ProtocolError('peer sent a BIN frame not followed by CRLF');
      }
      // A copy: the frame outlives the buffer it arrived in.
      out.push({ bin: Buffer.from(this.buf.subarray(start, start + length)) });
      at = start + length + 2;
    }
    this.buf = this.buf.subarray(at);
    this.held = this.buf.length;
    return out;
  }
}
