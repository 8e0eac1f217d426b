import { connect, createServer, type Server, type Socket } from 'node:net';
import { onTestFinished } from 'vitest';

/** A line-protocol server on 127.0.0.1 port 0 that a test scripts; closed when the test finishes. */
export interface FakeServer {
  readonly port: number;
  /** Connections accepted so far, the first being 1. */
  readonly accepted: () => number;
  /** Every socket accepted, the open and the closed. */
  readonly sockets: Socket[];
}

/**
 * Calls `onLine(line, socket, n)` for each request line of the n-th connection; whatever it does is the
 * answer (write, nothing, destroy). The client's handshake, a first PING, is answered PONG.
 */
export async function fakeServer(onLine: (line: string, socket: Socket, n: number) => void): Promise<FakeServer> {
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    const n = sockets.length;
    socket.on('error', () => {});
    let buffered = '';
    let handshake = true;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      for (let nl = buffered.indexOf('\n'); nl !== -1; nl = buffered.indexOf('\n')) {
        const line = buffered.slice(0, nl).replace(/\r$/, '');
        buffered = buffered.slice(nl + 1);
        if (handshake && line === 'PING') socket.write('PONG\r\n');
        else if (!socket.destroyed) onLine(line, socket, n);
        handshake = false;
      }
    });
  });
  const port = await listen(server);
  onTestFinished(() => close(server, sockets));
  return { port, accepted: () => sockets.length, sockets };
}

/**
 * A TCP relay on 127.0.0.1 port 0 in front of a node, so a test can cut every connection through it,
 * refuse new ones for a while, or point it at another node, while the client keeps one address.
 */
export interface Relay {
  readonly port: number;
  /** Where connections go from now on. */
  target: number;
  /** Destroys every connection through it (the client sees the node hang up). */
  cut(): void;
  /** While true, new connections are closed at once. */
  refusing: boolean;
  /** Connections accepted so far. */
  readonly accepted: () => number;
}

export async function relay(target: number): Promise<Relay> {
  const pairs: Socket[] = [];
  let accepted = 0;
  const server = createServer((inbound) => {
    accepted++;
    inbound.on('error', () => {});
    if (r.refusing) {
      inbound.destroy();
      return;
    }
    const outbound = connect({ host: '127.0.0.1', port: r.target });
    outbound.on('error', () => inbound.destroy());
    inbound.on('close', () => outbound.destroy());
    outbound.on('close', () => inbound.destroy());
    inbound.pipe(outbound).pipe(inbound);
    pairs.push(inbound, outbound);
  });
  const r: Relay = {
    port: await listen(server),
    target,
    refusing: false,
    accepted: () => accepted,
    cut() {
      for (const s of pairs.splice(0)) s.destroy();
    },
  };
  onTestFinished(() => close(server, pairs));
  return r;
}

/** Resolves when `check` holds, polling every 10 ms for at most `ms`. */
export async function until(check: () => boolean, ms = 5000): Promise<void> {
  for (const deadline = Date.now() + ms; !check(); ) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : 0);
    });
  });
}

function close(server: Server, sockets: Socket[]): Promise<void> {
  for (const s of sockets) s.destroy();
  return new Promise((resolve) => server.close(() => resolve()));
}
