import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type SecureContextOptions, type Server as TlsServer, type TlsOptions } from 'node:tls';
import type { Logger } from 'pino';
import type { ClientInfo, Context } from '../commands/context.js';
import type { Dialect } from '../protocol/dialect.js';
import { errorReply, Output } from '../protocol/output.js';
import { Connection, Traffic } from './connection.js';

export interface ServerOptions {
  readonly ctx: Context;
  readonly logger: Logger;
  readonly maxConnections: number;
  /** Each connection's own instance of the protocol it speaks. */
  readonly dialect: () => Dialect;
  readonly idleTimeoutMs: number;
  readonly drainTimeoutMs?: number;
  readonly maxBatch?: number;
  /** Serve TLS (`[network.tls]`); plain TCP when undefined. */
  readonly tls?: TlsOptions | undefined;
}

/** What `configure()` changes while the server runs. */
export interface ServerLimits {
  readonly maxConnections: number;
  readonly idleTimeoutMs: number;
}

/**
 * The client-facing server. `handle()` takes any Duplex stream, so tests can use `duplexPair()`;
 * `listen()` adds a TCP listener in front of it.
 */
export class KvServer {
  /** What this listener's connections read and wrote (the node's totals are in ctx.stats). */
  readonly traffic = new Traffic();
  private readonly connections = new Set<Connection>();
  private readonly out = new Output();
  private tcp: Server | undefined;
  private nextId = 1;
  /** The limits a config reload may change (configure()). */
  private limits: ServerLimits;

  constructor(private readonly opts: ServerOptions) {
    this.limits = { maxConnections: opts.maxConnections, idleTimeoutMs: opts.idleTimeoutMs };
  }

  /** New limits (a config reload): the connection limit for new connections, the idle timeout for all. */
  configure(limits: ServerLimits): void {
    this.limits = limits;
    for (const conn of this.connections) conn.setIdleTimeout(limits.idleTimeoutMs);
  }

  /** A renewed certificate, key or CA (a config reload): new TLS clients get it. No-op on a plain TCP listener. */
  setSecureContext(options: SecureContextOptions): void {
    if (this.opts.tls !== undefined) (this.tcp as TlsServer | undefined)?.setSecureContext(options);
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** The open connections (CLIENT LIST). */
  clients(): Iterable<ClientInfo> {
    return this.connections.values();
  }

  /** Serves one client stream; refuses it with an ERROR line when `maxConnections` are open. */
  handle(stream: Duplex): void {
    const { ctx, logger } = this.opts;
    if (this.connections.size >= this.limits.maxConnections) {
      ctx.stats.connectionsRejected++;
      logger.debug('connection refused: max connections reached');
      stream.on('error', () => {});
      stream.end(errorReply('max connections reached'));
      setTimeout(() => stream.destroy(), 1000).unref();
      return;
    }
    ctx.stats.connectionsTotal++;
    logger.debug({ connections: this.connections.size + 1 }, 'connection opened');
    const socket = stream as Partial<Socket>;
    const conn = new Connection(stream, {
      ctx,
      id: this.nextId++,
      address: socket.remoteAddress === undefined ? 'local' : `${socket.remoteAddress}:${socket.remotePort}`,
      out: this.out,
      logger,
      dialect: this.opts.dialect(),
      maxBatch: this.opts.maxBatch ?? 1024,
      idleTimeoutMs: this.limits.idleTimeoutMs,
      drainTimeoutMs: this.opts.drainTimeoutMs ?? 30_000,
      traffic: this.traffic,
      onClose: (c) => {
        this.connections.delete(c);
        logger.debug({ connections: this.connections.size }, 'connection closed');
      },
    });
    this.connections.add(conn);
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    // allowHalfOpen: `echo CMD | nc host port` half-closes after sending; it must still get its replies.
    const onSocket = (socket: Socket): void => {
      socket.setNoDelay(true);
      this.handle(socket);
    };
    const tlsOptions = this.opts.tls;
    let tcp: Server;
    if (tlsOptions === undefined) {
      tcp = createServer({ allowHalfOpen: true, noDelay: true }, onSocket);
    } else {
      // Half-open only once the handshake is over: a client gone in the middle of one is closed at once.
      tcp = createTlsServer({ ...tlsOptions, allowHalfOpen: false, noDelay: true }, (socket: Socket) => {
        socket.allowHalfOpen = true;
        onSocket(socket);
      });
      tcp.on('tlsClientError', (err: Error, socket: Socket) => {
        this.opts.ctx.stats.tlsHandshakeFailures++;
        this.opts.logger.debug({ err: err.message }, 'TLS handshake failed');
        socket.destroy();
      });
    }
    this.tcp = tcp;
    return new Promise((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(port, host, () => {
        tcp.off('error', reject);
        tcp.on('error', (err) => this.opts.logger.error({ err }, 'listener error'));
        resolve(tcp.address() as AddressInfo);
      });
    });
  }

  /**
   * Stops accepting, lets every connection answer what it has received, then closes it. Connections
   * still open after `timeoutMs` are destroyed.
   */
  async close(timeoutMs = 5000): Promise<void> {
    const listening = this.tcp;
    const stopped = listening
      ? new Promise<void>((resolve) => listening.close(() => resolve()))
      : Promise.resolve();
    for (const conn of this.connections) conn.shutdown();
    const deadline = Date.now() + timeoutMs;
    while (this.connections.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    for (const conn of this.connections) conn.destroy();
    // 'close' events of destroyed streams come on a later tick.
    while (this.connections.size > 0) await new Promise((r) => setImmediate(r));
    await stopped;
  }
}
