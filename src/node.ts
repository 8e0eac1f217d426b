import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { AntiEntropy } from './antientropy/antientropy.js';
import { PeerProof } from './antientropy/handshake.js';
import { Stats, type Context } from './commands/context.js';
import { LineDialect } from './commands/dialect.js';
import { COMMAND_NAMES } from './commands/index.js';
import type { Config } from './config/schema.js';
import { MetricsServer } from './metrics/http.js';
import { createRegistry } from './metrics/metrics.js';
import { MemcachedListener } from './memcached/listener.js';
import { startBroker, type EmbeddedBroker } from './replication/broker.js';
import { Presence } from './replication/presence.js';
import { Replicator } from './replication/replicator.js';
import { Authenticator, isLoopbackAddress } from './security/auth.js';
import { loadTls, readPem } from './security/tls.js';
import { KvServer } from './server/server.js';
import { Store } from './store/store.js';
import { VERSION } from './version.js';

export interface RunningNode {
  readonly address: AddressInfo;
  readonly store: Store;
  readonly server: KvServer;
  /** Present when `[mqtt] enabled`. */
  readonly replicator: Replicator | undefined;
  /** Present when `[mqtt.embedded] enabled`. */
  readonly broker: EmbeddedBroker | undefined;
  readonly antiEntropy: AntiEntropy;
  /** Where /metrics, /health and /ready are served, when `[metrics] enabled`. */
  readonly metricsAddress: AddressInfo | undefined;
  /** Where the memcached listener is, when `[memcached] enabled`. */
  readonly memcachedAddress: AddressInfo | undefined;
  /** Stops accepting, answers what is in flight, closes LMDB. */
  stop(): Promise<void>;
}

/** Line bytes beyond the largest value: command word, key and separators (issue #2: max_value_bytes + 1 KiB). */
const LINE_OVERHEAD = 1024;

/** Opens the store and starts serving clients; everything one node is, wired together. */
export async function startNode(config: Config, logger: Logger): Promise<RunningNode> {
  // Certificates first: a file that cannot be read stops start-up before anything is opened.
  const tls = loadTls(config.network.tls);
  const mqttCa = config.mqtt.ca_file === '' ? undefined : readPem(config.mqtt.ca_file, 'mqtt.ca_file');
  // The broker first: this node's own replicator (and the other nodes) connect to it.
  const broker = config.mqtt.embedded.enabled
    ? await startBroker(
        config.mqtt.embedded.bind_address,
        config.mqtt.embedded.port,
        logger,
        config.mqtt.username === '' ? undefined : { username: config.mqtt.username, password: config.mqtt.password, topicPrefix: config.mqtt.topic_prefix },
      )
    : undefined;
  const store = Store.open({
    path: config.storage.path,
    nodeId: config.node_id,
    maxClockSkewMs: config.storage.max_clock_skew_ms,
    tombstoneGraceSeconds: config.storage.tombstone_grace_seconds,
    clusterSecret: config.cluster_secret,
    treeBits: config.anti_entropy.segment_bits,
    fsync: config.storage.fsync,
    fsyncPeriodMs: config.storage.fsync_period_ms,
    maxValueBytes: config.storage.max_value_bytes,
    logger,
  });
  const limits = {
    maxKeyBytes: config.storage.max_key_bytes,
    maxValueBytes: config.storage.max_value_bytes,
  };
  // A node that runs the broker talks to it directly, whatever broker_address says (the other nodes
  // use broker_address to reach it).
  const mqttConfig = broker
    ? { ...config.mqtt, broker_address: `mqtt://${hostForUrl(broker.address.address)}:${broker.address.port}` }
    : config.mqtt;
  // The other nodes' statuses (online, offline), as the broker reports them.
  const presence = new Presence(config.node_id);
  const replicator = config.mqtt.enabled
    ? new Replicator({
        store,
        nodeId: config.node_id,
        mqtt: mqttConfig,
        limits,
        logger,
        clusterSecret: config.cluster_secret,
        presence,
        version: VERSION,
        ...(mqttCa === undefined ? {} : { ca: mqttCa }),
        ...(broker ? { protocolVersion: 4 as const } : {}),
      })
    : undefined;
  const peerProof = new PeerProof(config.cluster_secret);
  const antiEntropy = new AntiEntropy({
    store,
    nodeId: config.node_id,
    limits,
    proof: peerProof,
    tls: tls?.client,
    enabled: config.anti_entropy.enabled,
    peers: config.anti_entropy.peer_list,
    intervalMs: config.anti_entropy.interval_seconds * 1000,
    maxConcurrent: config.anti_entropy.max_concurrent_syncs,
    presence,
    brokerConnected: () => replicator?.stats.connected === true,
    logger,
  });
  const ctx: Context = {
    store,
    stats: new Stats(COMMAND_NAMES),
    limits,
    nodeId: config.node_id,
    version: VERSION,
    currentConnections: () => server.connectionCount,
    clients: () => server.clients(),
    replication: replicator,
    antiEntropy,
    peerProof,
    auth: new Authenticator({ password: config.security.password, users: config.security.users }),
    adminCommands: config.security.admin_commands,
    sectionStats: {
      replication: () => replicator?.statsLines() ?? ['replication_enabled:0'],
      antientropy: () => antiEntropy.statsLines(),
      peers: () => antiEntropy.peerLines(),
    },
  };
  const server = new KvServer({
    ctx,
    logger,
    maxConnections: config.network.max_connections,
    // Room for a value in base64 too: anti-entropy pushes values that are not line-safe that way.
    dialect: () => new LineDialect(ctx, logger, Math.ceil((limits.maxValueBytes * 4) / 3) + limits.maxKeyBytes + LINE_OVERHEAD),
    idleTimeoutMs: config.network.connection_timeout * 1000,
    tls: tls?.server,
  });
  let stopping = false;
  const metrics = config.metrics.enabled
    ? new MetricsServer(
        createRegistry({ stats: ctx.stats, store, antiEntropy, replicator, connections: () => server.connectionCount }),
        {
          health: () => [
            ...(stopping ? ['stopping'] : []),
            ...(replicator !== undefined && !replicator.stats.connected ? ['not connected to the replication broker'] : []),
          ],
          ready: () => (stopping ? ['stopping'] : []),
        },
        logger,
      )
    : undefined;
  const memcached = config.memcached.enabled
    ? new MemcachedListener({ ctx, logger, maxConnections: config.network.max_connections, idleTimeoutMs: config.network.connection_timeout * 1000, tls: tls?.server })
    : undefined;
  let address: AddressInfo;
  let metricsAddress: AddressInfo | undefined;
  let memcachedAddress: AddressInfo | undefined;
  try {
    address = await server.listen(config.network.bind_port, config.network.bind_address);
    memcachedAddress = await memcached?.listen(config.memcached.port, config.memcached.bind_address);
    metricsAddress = await metrics?.listen(config.metrics.port, config.metrics.bind_address);
  } catch (err) {
    await memcached?.close();
    await server.close();
    await replicator?.stop();
    await store.close();
    await broker?.close();
    throw err;
  }
  if (memcachedAddress !== undefined) {
    logger.info({ address: memcachedAddress.address, port: memcachedAddress.port }, 'memcached listener listening');
    if (!isLoopbackAddress(memcachedAddress.address)) {
      logger.warn({ address: memcachedAddress.address }, "the memcached listener has no AUTH (memcached's text protocol has none): anyone who can reach it can read and write");
    }
  }
  if (metricsAddress !== undefined) logger.info({ address: metricsAddress.address, port: metricsAddress.port }, 'metrics listening (/metrics, /health, /ready)');
  logger.info(
    { address: address.address, port: address.port, tls: tls !== undefined, path: config.storage.path, keys: store.size },
    'node listening',
  );
  if (!ctx.auth.required && !isLoopbackAddress(address.address)) {
    logger.warn(
      { address: address.address, port: address.port },
      'listening on a non-loopback address with no password: anyone who can reach this port can read and write; set [security] password or users',
    );
  }
  // Connected only now: this node's status and last will name the client port it listens on.
  replicator?.start(address.address.includes(':') ? `[${address.address}]:${address.port}` : `${address.address}:${address.port}`);
  antiEntropy.start();
  return {
    address,
    store,
    server,
    replicator,
    broker,
    antiEntropy,
    metricsAddress,
    memcachedAddress,
    async stop() {
      stopping = true;
      antiEntropy.stop();
      await Promise.all([server.close(), memcached?.close()]);
      // Writes acknowledged so far are published before the client disconnects.
      store.flush();
      await replicator?.stop();
      await store.close();
      await broker?.close();
      await metrics?.close();
      logger.info('node stopped');
    },
  };
}

function hostForUrl(address: string): string {
  if (address === '0.0.0.0') return '127.0.0.1';
  if (address === '::') return '[::1]';
  return address.includes(':') ? `[${address}]` : address;
}
