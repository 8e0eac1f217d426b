import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 that a fault test can cut and heal: cut, it drops every connection through
 * it and refuses new ones (a network partition, as the two ends see it); healed, it forwards again.
 */
export class Proxy {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private open = true;
  /** Connections refused while cut. */
  refused = 0;

  private constructor(
    private readonly target: number,
    server: Server,
  ) {
    this.server = server;
  }

  /** A proxy on a free port forwarding to 127.0.0.1:`target`. */
  static async start(target: number, port = 0): Promise<Proxy> {
    const server = createServer({ noDelay: true });
    const proxy = new Proxy(target, server);
    server.on('connection', (client: Socket) => proxy.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get isCut(): boolean {
    return !this.open;
  }

  cut(): void {
    this.open = false;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  heal(): void {
    this.open = true;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    if (!this.open) {
      this.refused++;
      client.destroy();
      return;
    }
    const upstream = connect({ port: this.target, host: '127.0.0.1', noDelay: true });
    this.sockets.add(client);
    this.sockets.add(upstream);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
