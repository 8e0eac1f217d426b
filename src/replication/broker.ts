import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Aedes, type AuthenticateError } from 'aedes';
import type { Logger } from 'pino';

/** An MQTT broker (Aedes) inside this node, for a cluster without Mosquitto. */
export interface EmbeddedBroker {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

/** Who may use the embedded broker: the cluster's MQTT credentials (`[mqtt] username`, `password`). */
export interface BrokerCredentials {
  readonly username: string;
  readonly password: string;
  /** `[mqtt] topic_prefix`: a client may publish only to `<prefix>/updates/<its client id>` and `<prefix>/nodes/<its client id>`. */
  readonly topicPrefix: string;
}

/**
 * Starts Aedes on `host:port`. It speaks MQTT 3.1.1 only, and its sessions live in memory: a restart of
 * this node forgets what it queued for offline peers (anti-entropy repairs that).
 *
 * With `credentials`, a client must present them (anything else is refused at CONNECT), and it may
 * publish only to its own updates and status topics (its last will included): a node's client id is its
 * node id (the `[mqtt] client_id` default), so one node cannot publish as another. A refused publish closes the client's connection
 * (MQTT 3.1.1 has no negative acknowledgement).
 */
export async function startBroker(host: string, port: number, logger: Logger, credentials?: BrokerCredentials): Promise<EmbeddedBroker> {
  const aedes = await Aedes.createBroker();
  if (credentials !== undefined) guard(aedes, credentials, logger);
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

function guard(aedes: Aedes, credentials: BrokerCredentials, logger: Logger): void {
  // Digests of equal length, so the comparison takes the same time whatever was sent.
  const digest = (s: string | Buffer): Buffer => createHash('sha256').update(s).digest();
  const user = digest(credentials.username);
  const password = digest(credentials.password);
  aedes.authenticate = (client, username, pass, done) => {
    const userOk = timingSafeEqual(digest(username ?? ''), user);
    const passOk = timingSafeEqual(digest(pass ?? Buffer.alloc(0)), password);
    if (userOk && passOk) return done(null, true);
    logger.warn({ client: client.id }, 'broker: refused a client with wrong or missing credentials');
    const err: AuthenticateError = Object.assign(new Error('bad username or password'), { returnCode: 4 });
    done(err, false);
  };
  const updates = `${credentials.topicPrefix}/updates/`;
  const nodes = `${credentials.topicPrefix}/nodes/`;
  aedes.authorizePublish = (client, packet, done) => {
    if (client === null || packet.topic === updates + client.id || packet.topic === nodes + client.id) return done(null);
    logger.warn({ client: client.id, topic: packet.topic }, "broker: refused a publish to another node's topic");
    done(new Error(`client ${client.id} may publish only to ${updates}${client.id} and ${nodes}${client.id}`));
  };
}
