import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Aedes } from 'aedes';
import type { Logger } from 'pino';

/** An MQTT broker (Aedes) inside this node, for a cluster without Mosquitto. */
export interface EmbeddedBroker {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

/**
 * Starts Aedes on `host:port`. It speaks MQTT 3.1.1 only, and its sessions live in memory: a restart of
 * this node forgets what it queued for offline peers (anti-entropy repairs that).
 */
export async function startBroker(host: string, port: number, logger: Logger): Promise<EmbeddedBroker> {
  const aedes = await Aedes.createBroker();
  const sockets = new Set<Socket>();
  const server = createServer({ noDelay: true }, (socket) => {
    // Without no-delay small messages wait for delayed ACKs: ~40 ms at p99 (DESIGN.md section 7).
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    aedes.handle(socket);
  });
  aedes.on('clientError', (client, err) => logger.debug({ client: client.id, err: err.message }, 'broker: client error'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  logger.info({ address: address.address, port: address.port }, 'embedded MQTT broker listening');
  return {
    address,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await closed;
    },
  };
}
