import { connect, type Socket } from 'node:net';
import { connect as connectTls, type ConnectionOptions } from 'node:tls';
import { ProtocolError } from '../errors.js';
import { MAX_REPLY_BYTES } from './wire.js';

/** One reply: a text line (without CRLF) or the payload of a `BIN` frame. */
export type Reply = { readonly line: string } | { readonly bin: Buffer };

interface Waiter {
  resolve(reply: Reply): void;
  reject(err: Error): void;
}

/** A `BIN` frame may hold at most one record past the reply cap; anything far beyond is refused. */
const MAX_FRAME = MAX_REPLY_BYTES + 80 * 1024 * 1024;

/**
 * A connection to a peer's client port for anti-entropy. Requests are pipelined: `send()` writes a
 * line at once and resolves with its reply, replies arriving in request order. An `ERROR ...` reply
 * rejects. Counts the bytes both ways.
 */
export class PeerClient {
  bytesSent = 0;
  bytesReceived = 0;
  private readonly waiting: Waiter[] = [];
  private buf: Buffer = Buffer.alloc(0);
  private chunks: Buffer[] = [];
  /** Bytes in `buf` and `chunks`; and how many `parse()` needs before it can go on. */
  private held = 0;
  private need = 0;
  private failure: Error | undefined;

  private constructor(
    private readonly socket: Socket,
    timeoutMs: number,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.bytesReceived += chunk.length;
      // A large frame arrives in many chunks: join them once it is complete, not chunk by chunk.
      this.chunks.push(chunk);
      this.held += chunk.length;
      if (this.held < this.need) return;
      this.buf = Buffer.concat([this.buf, ...this.chunks]);
      this.chunks = [];
      this.held = this.buf.length;
      this.need = 0;
      this.parse();
    });
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('peer closed the connection')));
    socket.setTimeout(timeoutMs, () => {
      if (this.waiting.length > 0) this.fail(new Error(`peer did not answer within ${timeoutMs} ms`));
    });
  }

  /** Connects over TCP, or over TLS with `tls` (the peer's certificate is checked against `host`). */
  static open(host: string, port: number, timeoutMs: number, tls?: ConnectionOptions): Promise<PeerClient> {
    return new Promise((resolve, reject) => {
      const socket = tls === undefined ? connect({ host, port }) : connectTls({ ...tls, host, port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once(tls === undefined ? 'connect' : 'secureConnect', () => {
        clearTimeout(timer);
        socket.removeListener('error', onError);
        resolve(new PeerClient(socket, timeoutMs));
      });
      const onError = (err: Error): void => {
        clearTimeout(timer);
        reject(err);
      };
      socket.once('error', onError);
    });
  }

  /** Sends one request line (CRLF added unless present) and resolves with its reply. */
  send(line: string | Buffer): Promise<Reply> {
    if (this.failure !== undefined) return expected(Promise.reject(this.failure));
    const data = typeof line === 'string' ? Buffer.from(`${line}\r\n`) : line;
    this.bytesSent += data.length;
    this.socket.write(data);
    return expected(new Promise<Reply>((resolve, reject) => this.waiting.push({ resolve, reject })));
  }

  /** Sends and expects a text line. */
  line(line: string | Buffer): Promise<string> {
    return expected(
      this.send(line).then((r) => {
        if (!('line' in r)) throw new ProtocolError('peer sent binary where a line was expected');
        return r.line;
      }),
    );
  }

  /** Sends and expects a `BIN` frame. */
  binary(line: string): Promise<Buffer> {
    return expected(
      this.send(line).then((r) => {
        if (!('bin' in r)) throw new ProtocolError(`peer answered ${JSON.stringify(r.line.slice(0, 80))}`);
        return r.bin;
      }),
    );
  }

  close(): void {
    this.failure ??= new Error('closed');
    this.socket.end();
    this.socket.destroy();
  }

  private parse(): void {
    for (;;) {
      const nl = this.buf.indexOf(0x0a);
      if (nl === -1) {
        if (this.buf.length > 64 * 1024) this.fail(new ProtocolError('peer sent an overlong line'));
        return;
      }
      const line = this.buf.toString('utf8', 0, nl > 0 && this.buf[nl - 1] === 0x0d ? nl - 1 : nl);
      let reply: Reply;
      let used = nl + 1;
      if (line.startsWith('BIN ')) {
        const length = Number(line.slice(4));
        if (!Number.isSafeInteger(length) || length < 0 || length > MAX_FRAME) {
          return this.fail(new ProtocolError('peer sent a malformed BIN frame'));
        }
        if (this.buf.length < used + length + 2) {
          this.need = used + length + 2;
          return;
        }
        reply = { bin: Buffer.from(this.buf.subarray(used, used + length)) };
        used += length + 2;
      } else {
        reply = { line };
      }
      this.buf = this.buf.subarray(used);
      this.held = this.buf.length;
      const w = this.waiting.shift();
      if (w === undefined) return this.fail(new ProtocolError('peer sent a reply nobody asked for'));
      if ('line' in reply && reply.line.startsWith('ERROR')) w.reject(new ProtocolError(`peer: ${reply.line}`));
      else w.resolve(reply);
    }
  }

  private fail(err: Error): void {
    if (this.failure === undefined) this.failure = err;
    for (const w of this.waiting.splice(0)) w.reject(this.failure);
    this.socket.destroy();
  }
}

/**
 * Requests are pipelined: when one fails the exchange stops, and the replies still pending behind it
 * are never awaited. Their rejection is expected, not an unhandled one; whoever awaits still sees it.
 */
function expected<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}
