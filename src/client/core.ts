import { EventEmitter } from 'node:events';
import { Call, type Pending } from './call.js';
import { Connection } from './connection.js';
import { line as oneLine } from './arguments.js';
import { ArgumentError, ConnectionError, type MerkleKVError, ReplyError, type TimeoutError } from './errors.js';
import { authLine, type ClientOptions, type Credentials, settingsOf, type Settings } from './options.js';
import { ok, pong, raw, type Parse } from './parse.js';

/** The client's events. None needs a listener: 'error' is emitted only to listeners there are. */
export type ClientEvents = {
  /** A connection is ready (authenticated, if a password is set): the first one and each one after. */
  connect: [];
  /** The connection was lost or a reconnection attempt failed; requests see their own errors too. */
  error: [err: MerkleKVError];
  /** The next attempt to connect again starts in `delay` ms. */
  reconnecting: [info: { readonly attempt: number; readonly delay: number }];
  /** close() or disconnect() is done. */
  close: [];
};

/**
 * Where the client is: `new` until connect(); `ready` with a connection; `reconnecting` between attempts
 * (requests wait); `lost` when connect() failed, or the connection went with `reconnect: false`;
 * `closed` after close().
 */
export type ClientStatus = 'new' | 'connecting' | 'ready' | 'reconnecting' | 'lost' | 'closing' | 'closed';

/** Per call: overrides the client's `timeout` (ms; 0: none). */
export interface RequestOptions {
  readonly timeout?: number;
}

/**
 * The client's machinery, without the commands (client.ts): one connection at a time, requests sent as
 * they are called (pipelined) and held while a connection is being made, timeouts, reconnection with
 * exponential backoff, AUTH on every connection.
 */
export class ClientCore extends EventEmitter<ClientEvents> {
  protected readonly settings: Settings;
  private state: ClientStatus = 'new';
  private credentials: Credentials | undefined;
  private connection: Connection | undefined;
  /** A connection being opened (its AUTH in flight), so close() can stop it. */
  private opening: Connection | undefined;
  /** Requests made while no connection is ready, sent in order once one is. */
  private waiting: Pending[] = [];
  private waitingDone = 0;
  private readyWaiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
  private attempts = 0;
  private retry: NodeJS.Timeout | undefined;
  private connecting: Promise<void> | undefined;
  private closing: Promise<void> | undefined;

  constructor(options: ClientOptions = {}) {
    super();
    this.settings = settingsOf(options);
    this.credentials = this.settings.credentials;
  }

  get status(): ClientStatus {
    return this.state;
  }

  /**
   * Connects (and sends AUTH when a password is set). Rejects with ConnectionError if the first
   * attempt fails, or ReplyError if AUTH is refused; the client can then connect() again.
   */
  connect(): Promise<void> {
    switch (this.state) {
      case 'ready':
        return Promise.resolve();
      case 'connecting':
        return this.connecting as Promise<void>;
      case 'reconnecting':
        return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
      case 'closing':
      case 'closed':
        return Promise.reject(new ConnectionError('client is closed'));
      case 'new':
      case 'lost':
        this.state = 'connecting';
        this.connecting = this.open().catch((err: unknown) => {
          if (this.state === 'connecting') this.state = 'lost';
          this.failWaiting(err as Error);
          throw err;
        });
        return this.connecting;
    }
  }

  /**
   * Sends one request line and resolves with its reply's lines as the server sent them, `ERROR ...`
   * included (it is not turned into a ReplyError): for commands this client has no method for.
   */
  command(line: string, options?: RequestOptions): Promise<string[]> {
    return this.send(() => rawLine(line), raw, options, true);
  }

  /**
   * Ends the client gracefully: requests already made get their replies (or their timeouts), then the
   * connection is closed. Requests made after close() reject with ConnectionError.
   */
  close(): Promise<void> {
    this.closing ??= this.shutDown(false);
    return this.closing;
  }

  /** Ends the client at once (also one that close() is ending): requests without a reply reject with ConnectionError. */
  disconnect(): Promise<void> {
    if (this.connection !== undefined) void this.connection.destroy(new ConnectionError('client disconnected'));
    this.closing ??= this.shutDown(true);
    return this.closing;
  }

  /**
   * Sends a request line and parses its reply. The line is built here, so that an argument its builder
   * refuses (ArgumentError) rejects the promise rather than throwing at the caller.
   */
  protected send<T>(line: string | (() => string), parse: Parse<T>, options?: RequestOptions, errorsAsReplies = false): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const call = new Call(typeof line === 'string' ? line : line(), parse, errorsAsReplies, resolve, reject);
      const refused = this.refusal();
      if (refused !== undefined) {
        call.fail(refused);
        return;
      }
      call.deadline(options?.timeout ?? this.settings.timeout, (c, err) => this.expired(c, err));
      if (this.state === 'ready') this.sendOn(this.connection as Connection, call);
      else this.waiting.push(call);
    });
  }

  /** AUTH succeeded on the connection: reconnections authenticate the same way. */
  protected authenticated(credentials: Credentials): void {
    this.credentials = credentials;
  }

  /** close() or disconnect() was called (state may change across an await). */
  private get stopping(): boolean {
    return this.state === 'closing' || this.state === 'closed';
  }

  private refusal(): ConnectionError | undefined {
    switch (this.state) {
      case 'new':
        return new ConnectionError('not connected: call connect() first');
      case 'lost':
        // The connection was lost with reconnect off, or connect() failed.
        return new ConnectionError('not connected: call connect() again');
      case 'closing':
      case 'closed':
        return new ConnectionError('client is closed');
      default:
        return undefined;
    }
  }

  private sendOn(connection: Connection, call: Pending): void {
    call.connection = connection;
    connection.send(call);
  }

  /**
   * A request timed out. If it was sent, the replies still to come can no longer be matched to their
   * requests: the connection goes, and the client makes a new one.
   */
  private expired(call: Pending, err: TimeoutError): void {
    const connection = call.connection;
    if (connection === undefined) {
      // Still waiting for a connection: drop it from the queue now and then, not one by one.
      if (++this.waitingDone * 2 > this.waiting.length) this.compactWaiting();
      return;
    }
    if (connection.usable) void connection.destroy(new ConnectionError(`connection reset: a ${call.word} request timed out, so the replies after it could not be matched`, { cause: err }));
  }

  /**
   * Opens a connection, shakes hands, and sends the requests that waited for it. The handshake is AUTH
   * when a password is set, PING otherwise: a connection is ready once the node has answered, so a port
   * that accepts and hangs up (a node starting, a proxy) counts as a failed attempt, not a connection.
   */
  private async open(): Promise<void> {
    const started = Date.now();
    const connection = await Connection.open(this.settings, (c, err) => this.lost(c, err));
    this.opening = connection;
    try {
      if (this.stopping) throw new ConnectionError('client is closed');
      // connectTimeout bounds the whole attempt; without one, the request timeout bounds the handshake.
      const { connectTimeout, timeout } = this.settings;
      await this.handshake(connection, connectTimeout > 0 ? Math.max(1, connectTimeout - (Date.now() - started)) : timeout);
      if (this.stopping) throw new ConnectionError('client is closed');
    } catch (err) {
      void connection.destroy(new ConnectionError('handshake failed', { cause: err }));
      throw err;
    } finally {
      this.opening = undefined;
    }
    this.connection = connection;
    this.state = 'ready';
    this.attempts = 0;
    const waiting = this.waiting;
    this.waiting = [];
    this.waitingDone = 0;
    for (const call of waiting) if (!call.done) this.sendOn(connection, call);
    for (const w of this.readyWaiters.splice(0)) w.resolve();
    this.emit('connect');
  }

  private handshake(connection: Connection, ms: number): Promise<void> {
    const credentials = this.credentials;
    const { host, port } = this.settings;
    return new Promise<void>((resolve, reject) => {
      const failed = (err: Error): void => {
        // A refused AUTH says so; anything else is a connection that could not be made.
        reject(err instanceof ReplyError ? err : new ConnectionError(`cannot connect to ${host}:${port}: ${err.message}`, { cause: err }));
      };
      const call = new Call(credentials === undefined ? 'PING' : authLine(credentials), credentials === undefined ? pong : ok, false, () => resolve(), failed);
      call.deadline(ms, () => void connection.destroy(new ConnectionError('handshake timed out')));
      this.sendOn(connection, call);
    });
  }

  /** The connection closed: by close(), or lost (then reconnect, unless reconnect is off). */
  private lost(connection: Connection, err: ConnectionError): void {
    if (connection !== this.connection) return;
    this.connection = undefined;
    if (this.state !== 'ready') return;
    this.emitError(err);
    if (this.settings.reconnect === undefined) {
      this.state = 'lost';
      return;
    }
    this.state = 'reconnecting';
    this.schedule();
  }

  private schedule(): void {
    const { initialDelay, maxDelay } = this.settings.reconnect as NonNullable<Settings['reconnect']>;
    const delay = Math.min(maxDelay, initialDelay * 2 ** Math.min(this.attempts, 30));
    this.attempts++;
    this.emit('reconnecting', { attempt: this.attempts, delay });
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.open().catch((err: unknown) => {
        if (this.state !== 'reconnecting') return;
        this.emitError(err as MerkleKVError);
        // A refused AUTH will be refused again: the requests waiting learn why now, not at their timeout.
        if (err instanceof ReplyError) this.failWaiting(err);
        this.schedule();
      });
    }, delay);
  }

  private async shutDown(now: boolean): Promise<void> {
    this.state = 'closing';
    clearTimeout(this.retry);
    this.retry = undefined;
    const closed = new ConnectionError('client is closed');
    this.failWaiting(closed);
    for (const w of this.readyWaiters.splice(0)) w.reject(closed);
    if (this.opening !== undefined) void this.opening.destroy(closed);
    const connection = this.connection;
    if (connection !== undefined) {
      if (now) {
        await connection.destroy(new ConnectionError('client disconnected'));
      } else {
        await connection.idle();
        await connection.end();
      }
    }
    this.connection = undefined;
    this.state = 'closed';
    this.emit('close');
  }

  private failWaiting(err: Error): void {
    const waiting = this.waiting;
    this.waiting = [];
    this.waitingDone = 0;
    for (const call of waiting) call.fail(err);
  }

  private compactWaiting(): void {
    this.waiting = this.waiting.filter((c) => !c.done);
    this.waitingDone = 0;
  }

  private emitError(err: MerkleKVError): void {
    // An 'error' event nobody listens to would throw and end the process.
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}

/** A line for command(): one request, with a reply (QUIT has none: close() ends the client). */
function rawLine(text: string): string {
  // The node trims spaces and tabs around a line (DESIGN.md section 2): so may we.
  const line = typeof text === 'string' ? oneLine(text.replace(/^[ \t]+|[ \t]+$/g, ''), 'a command line') : '';
  if (line === '') throw new ArgumentError('a command line must be a non-empty string');
  if (/^quit$/i.test(line)) throw new ArgumentError('QUIT has no reply: use close()');
  return line;
}
