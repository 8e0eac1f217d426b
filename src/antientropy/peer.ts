import { connect, type Socket } from 'node:net';
import { connect as connectTls, type ConnectionOptions } from 'node:tls';
import { PeerError, ProtocolError } from '../errors.js';
import { expected } from '../expected.js';
import { ReplyParser, type Reply } from './replies.js';

interface Waiter {
  resolve(reply: Reply): void;
  reject(err: Error): void;
  /** The request's command word, for the error an ERROR reply becomes. */
  readonly command: string;
}

/**
 * A connection to a peer's client port for anti-entropy. Requests are pipelined: `send()` writes a
 * line at once and resolves with its reply, replies arriving in request order (replies.ts splits
 * them). An `ERROR ...` reply rejects. A sender of many requests waits for `drained()` when
 * `congested`, so that they queue in the peer, not in this process. Counts the bytes both ways.
 */
export class PeerClient {
  bytesSent = 0;
  bytesReceived = 0;
  private readonly waiting: Waiter[] = [];
  private readonly parser = new ReplyParser();
  private failure: Error | undefined;

  private constructor(
    private readonly socket: Socket,
    timeoutMs: number,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.bytesReceived += chunk.length;
      let replies: Reply[];
      try {
        replies = this.parser.push(chunk);
      } catch (err) {
        return this.fail(err as Error);
      }
      for (const reply of replies) {
        const w = this.waiting.shift();
        if (w === undefined) return this.fail(new ProtocolError('peer sent a reply nobody asked for'));
        if ('line' in reply && reply.line.startsWith('ERROR')) w.reject(new ProtocolError(`peer: ${reply.line} (to ${w.command})`));
        else w.resolve(reply);
      }
    });
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new PeerError('peer closed the connection')));
    socket.setTimeout(timeoutMs, () => {
      if (this.waiting.length > 0) this.fail(new PeerError(`peer did not answer within ${timeoutMs} ms`));
    });
  }

  /** Connects over TCP, or over TLS with `tls` (the peer's certificate is checked against `host`). */
  static open(host: string, port: number, timeoutMs: number, tls?: ConnectionOptions): Promise<PeerClient> {
    return new Promise((resolve, reject) => {
      const socket = tls === undefined ? connect({ host, port }) : connectTls({ ...tls, host, port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new PeerError(`connect timed out after ${timeoutMs} ms`));
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

  /**
   * Sends one request line (CRLF added unless present) and resolves with its reply. Requests are
   * pipelined: when one fails the exchange stops, and the replies still pending behind it are never
   * awaited, so each reply's rejection is expected.
   */
  send(line: string | Buffer): Promise<Reply> {
    if (this.failure !== undefined) return expected(Promise.reject(this.failure));
    const data = typeof line === 'string' ? Buffer.from(`${line}\r\n`) : line;
    this.bytesSent += data.length;
    this.socket.write(data);
    const space = data.indexOf(0x20);
    const command = data.toString('latin1', 0, Math.min(space === -1 ? data.length : space, 16)).trim();
    return expected(new Promise<Reply>((resolve, reject) => this.waiting.push({ resolve, reject, command })));
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

  /** The socket's buffer is full: wait for `drained()` before sending more. */
  get congested(): boolean {
    return this.socket.writableNeedDrain;
  }

  /** Resolves once the socket's buffer has room again (at once if it has), or the connection failed. */
  drained(): Promise<void> {
    if (!this.congested || this.failure !== undefined) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  close(): void {
    this.failure ??= new PeerError('closed');
    this.socket.end();
    this.socket.destroy();
  }

  private fail(err: Error): void {
    if (this.failure === undefined) this.failure = err;
    for (const w of this.waiting.splice(0)) w.reject(this.failure);
    this.socket.destroy();
  }
}
