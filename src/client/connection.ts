import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { ReplyReader } from '../protocol/replies.js';
import { ConnectionError } from './errors.js';
import type { Settings } from './options.js';

/** A request on its way: the line sent, and where its reply's lines go. */
export interface Sent {
  readonly line: string;
  reply(lines: string[]): void;
  fail(err: Error): void;
}

/** How long close() waits for the node to close its side before it destroys the socket. */
const END_GRACE_MS = 1000;

/**
 * One socket to a node: writes request lines as they come (pipelined, corked per tick into one write)
 * and hands each complete reply to its request, in order (ReplyReader frames them). Knows nothing of
 * reconnecting, AUTH or timeouts: the client does that.
 */
export class Connection {
  private readonly reader = new ReplyReader();
  private readonly inFlight: Sent[] = [];
  private failure: ConnectionError | undefined;
  private corked = false;
  private idleWaiters: (() => void)[] = [];
  private readonly closed: Promise<void>;

  private constructor(
    private readonly socket: Socket,
    /** Called once, when the connection is lost or destroyed, with why. */
    onLost: (connection: Connection, err: ConnectionError) => void,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.data(chunk));
    socket.on('error', (err) => this.fail(new ConnectionError(`connection lost: ${err.message}`, { cause: err })));
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.fail(new ConnectionError('connection closed by the server'));
        resolve();
      }),
    );
    void this.closed.then(() => onLost(this, this.failure as ConnectionError));
  }

  /** Connects (and shakes hands, over TLS) within `connectTimeout`; a ConnectionError otherwise. */
  static open(settings: Settings, onLost: (connection: Connection, err: ConnectionError) => void): Promise<Connection> {
    const { host, port, tls, connectTimeout } = settings;
    return new Promise((resolve, reject) => {
      const socket = tls === undefined ? connectTcp({ host, port, noDelay: true }) : connectTls({ ...tls, host, port });
      const timer =
        connectTimeout > 0
          ? setTimeout(() => socket.destroy(new Error(`timed out after ${connectTimeout} ms`)), connectTimeout)
          : undefined;
      let settled = false;
      const failed = (err: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        reject(new ConnectionError(`cannot connect to ${host}:${port}: ${err.message}`, { cause: err }));
      };
      // A socket closed before it connected ends with 'error' or, for TLS, possibly 'close' alone.
      socket.on('error', failed);
      socket.once('close', () => failed(new Error('connection closed during the handshake')));
      socket.once(tls === undefined ? 'connect' : 'secureConnect', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.setNoDelay(true);
        const connection = new Connection(socket, onLost);
        socket.off('error', failed);
        resolve(connection);
      });
    });
  }

  /** Whether requests can still be sent. */
  get usable(): boolean {
    return this.failure === undefined;
  }

  /** Writes the request at once; its reply comes after those of the requests sent before it. */
  send(request: Sent): void {
    if (this.failure !== undefined) {
      request.fail(this.failure);
      return;
    }
    this.reader.expect(request.line);
    this.inFlight.push(request);
    // Every request of one tick goes out in one write (node-redis socket.ts).
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(`${request.line}\r\n`);
  }

  /** Resolves once no request is in flight (or the connection is lost). */
  idle(): Promise<void> {
    if (this.inFlight.length === 0 || this.failure !== undefined) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Fails every request in flight with `err` and closes the socket at once. */
  destroy(err: ConnectionError): Promise<void> {
    this.fail(err);
    this.socket.destroy();
    return this.closed;
  }

  /** Ends the connection once every request in flight has its reply (the caller waits for that). */
  async end(): Promise<void> {
    this.fail(new ConnectionError('client closed'));
    this.socket.end();
    const timer = setTimeout(() => this.socket.destroy(), END_GRACE_MS);
    await this.closed;
    clearTimeout(timer);
  }

  private data(chunk: string): void {
    let replies: string[][];
    try {
      replies = this.reader.push(chunk);
    } catch (err) {
      // A reply to no request, or a line past any bound: nothing after it can be matched any more.
      void this.destroy(new ConnectionError(`connection dropped: ${(err as Error).message}`, { cause: err }));
      return;
    }
    for (const lines of replies) this.inFlight.shift()?.reply(lines);
    if (this.inFlight.length === 0) this.wake();
  }

  private wake(): void {
    if (this.idleWaiters.length === 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private fail(err: ConnectionError): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    for (const request of this.inFlight.splice(0)) request.fail(err);
    this.wake();
  }
}
