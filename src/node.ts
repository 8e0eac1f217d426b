import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { AntiEntropy } from './antientropy/antientropy.js';
import { Backups, backupSettings } from './backups.js';
import { PeerProof } from './antientropy/handshake.js';
import { Stats, type Context } from './commands/context.js';
import { LineDialect } from './commands/dialect.js';
import { COMMAND_NAMES } from './commands/index.js';
import { Reloads, type ReloadResult } from './config/reload.js';
import type { Config } from './config/schema.js';
import { antiEntropySettings, registerLive } from './live.js';
import { MetricsServer } from './metrics/http.js';
import { createRegistry } from './metrics/metrics.js';
import { MemcachedListener } from './memcached/listener.js';
import { startBroker, type EmbeddedBroker } from './replication/broker.js';
import { Presence } from './replication/presence.js';
import { Replicator } from './replication/replicator.js';
import type { Limits } from './rules.js';
import { Authenticator, isLoopbackAddress } from './security/auth.js';
import { loadTls, readPem, type TlsSetup } from './security/tls.js';
import { KvServer } from './server/server.js';
import { Capacity, freshCacheDirectory, removeCacheDirectory, Store } from './store/index.js';
import { Teardown } from './teardown.js';
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
  /**
   * Re-reads the configuration as the node was started (startNode's `load`) and applies what can change
   * live; refused whole if it does not validate (config/reload.ts). SIGHUP and CONFIG RELOAD.
   */
  reload(): ReloadResult;
  /** Stops accepting, answers what is in flight, closes LMDB. */
  stop(): Promise<void>;
}

export interface NodeOptions {
  /** Reads the configuration again from where `config` came from (file, environment, flags), for reloads; absent: the node cannot reload. */
  readonly load?: () => Config;
}

/** Line bytes beyond the largest value: command word, key and separators (issue #2: max_value_bytes + 1 KiB). */
const LINE_OVERHEAD = 1024;

/** Opens the store and starts serving clients; everything one node is, wired together. */
export async function startNode(config: Config, logger: Logger, { load }: NodeOptions = {}): Promise<RunningNode> {
  // Certificates first: a file that cannot be read stops start-up before anything is opened.
  const tls = loadTls(config.network.tls);
  const mqttCa = config.mqtt.ca_file === '' ? undefined : readPem(config.mqtt.ca_file, 'mqtt.ca_file');
  const teardown = new Teardown();
  try {
    return await start(config, logger, { tls, mqttCa, teardown, reloads: new Reloads(config, logger, load) });
  } catch (err) {
    // What was opened is closed again, as stop() would close it; the error to report is the one that stopped start-up.
    await runTeardown(teardown, logger);
    throw err;
  }
}

interface StartOptions {
  readonly tls: TlsSetup | undefined;
  readonly mqttCa: Buffer | undefined;
  /** Every part opened defers its stop here; stop() runs them in reverse. */
  readonly teardown: Teardown;
  /** Where each part registers the settings it takes from a config reload (`onReload`). */
  readonly reloads: Reloads;
}

/**
 * Opens the parts in order, each deferring its stop as it opens, so that stop() (the steps in reverse)
 * stops anti-entropy, closes the client ports, publishes what is written, stops the replicator, closes
 * the store, the broker, and the metrics endpoint last.
 */
async function start(config: Config, logger: Logger, { tls, mqttCa, teardown, reloads }: StartOptions): Promise<RunningNode> {
  // The metrics endpoint closes last, so that /health and /ready say 'stopping' while the rest stops:
  // its step is deferred first, before there is a metrics server.
  let metrics: MetricsServer | undefined;
  teardown.defer('metrics', () => metrics?.close());
  // The broker first: this node's own replicator (and the other nodes) connect to it.
  const broker = config.mqtt.embedded.enabled ? await startEmbeddedBroker(config, logger) : undefined;
  if (broker !== undefined) teardown.defer('broker', () => broker.close());
  const capacity = new Capacity(config.storage.memory_limit_mb);
  reloads.onReload(['storage.memory_limit_mb'], (next) => capacity.setLimitMb(next.storage.memory_limit_mb));
  const store = openStore(config, logger, teardown, capacity);
  teardown.defer('store', () => store.close());
  const backups = new Backups(store, backupSettings(config), logger);
  teardown.defer('backups', () => backups.close());
  reloads.onReload(['storage.backup_*'], (next) => backups.configure(backupSettings(next)));
  const limits: Limits = { maxKeyBytes: config.storage.max_key_bytes, maxValueBytes: config.storage.max_value_bytes };
  // The other nodes' statuses (online, offline), as the broker reports them.
  const presence = new Presence(config.node_id);
  const replicator = config.mqtt.enabled ? createReplicator(config, logger, { store, limits, presence, broker, ca: mqttCa }) : undefined;
  if (replicator !== undefined) teardown.defer('replicator', () => replicator.stop());
  // Once the client ports are closed: writes acknowledged so far are published before the replicator disconnects.
  teardown.defer('flush', () => store.flush());
  const peerProof = new PeerProof(config.cluster_secret);
  const antiEntropy = createAntiEntropy(config, logger, { store, limits, peerProof, presence, replicator, tls });
  const { ctx, server, memcached } = createListeners(config, logger, { store, capacity, limits, replicator, antiEntropy, peerProof, tls, backups, reloads });
  teardown.defer('client ports', () => Promise.all([server.close(), memcached?.close()]));
  registerLive(reloads, { logger, auth: ctx.auth, server, memcached, antiEntropy, tls });
  if (config.metrics.enabled) metrics = createMetrics(logger, { ctx, replicator, antiEntropy, server, teardown });
  const address = await server.listen(config.network.bind_port, config.network.bind_address);
  const memcachedAddress = await memcached?.listen(config.memcached.port, config.memcached.bind_address);
  const metricsAddress = await metrics?.listen(config.metrics.port, config.metrics.bind_address);
  announce(logger, { address, memcachedAddress, metricsAddress, tls: tls !== undefined, store, ctx });
  // Connected only now: this node's status and last will name the client port it listens on.
  replicator?.start(advertised(config, address, logger));
  antiEntropy.start();
  backups.start();
  // First on stop: exchanges in progress end, so the SYNCs waiting on them are answered before the ports close.
  teardown.defer('anti-entropy', () => antiEntropy.stop());
  return {
    address,
    store,
    server,
    replicator,
    broker,
    antiEntropy,
    metricsAddress,
    memcachedAddress,
    reload: () => reloads.reload(),
    async stop() {
      const failure = await runTeardown(teardown, logger);
      if (failure !== undefined) throw failure.err;
      logger.info('node stopped');
    },
  };
}

/** Runs the teardown, logging each step that failed; resolves with the first failure. */
async function runTeardown(teardown: Teardown, logger: Logger): Promise<{ readonly err: unknown } | undefined> {
  const failures = await teardown.run();
  for (const { name, err } of failures) logger.error({ err, step: name }, `stopping: ${name} failed`);
  return failures[0];
}

function startEmbeddedBroker(config: Config, logger: Logger): Promise<EmbeddedBroker> {
  const { embedded, username, password, topic_prefix: topicPrefix } = config.mqtt;
  return startBroker(embedded.bind_address, embedded.port, logger, username === '' ? undefined : { username, password, topicPrefix });
}

/**
 * Opens the store: in `storage.path`, or for a cache node (`persistence_enabled = false`) in a fresh
 * temporary directory, syncing nothing, whose removal is deferred here to follow the store's close.
 */
function openStore(config: Config, logger: Logger, teardown: Teardown, capacity: Capacity): Store {
  const persistent = config.storage.persistence_enabled;
  if (!persistent && config.storage.path !== '') {
    logger.warn({ path: config.storage.path }, 'storage.path is ignored: with persistence_enabled = false the data lives in a temporary directory');
  }
  const path = persistent ? config.storage.path : freshCacheDirectory(config.node_id);
  if (!persistent) teardown.defer('cache directory', () => removeCacheDirectory(path));
  return Store.open({
    path,
    nodeId: config.node_id,
    maxClockSkewMs: config.storage.max_clock_skew_ms,
    tombstoneGraceSeconds: config.storage.tombstone_grace_seconds,
    clusterSecret: config.cluster_secret,
    treeBits: config.anti_entropy.segment_bits,
    fsync: persistent ? config.storage.fsync : 'none',
    fsyncPeriodMs: config.storage.fsync_period_ms,
    maxValueBytes: config.storage.max_value_bytes,
    capacity,
    logger,
  });
}

interface ReplicatorParts {
  readonly store: Store;
  readonly limits: Limits;
  readonly presence: Presence;
  readonly broker: EmbeddedBroker | undefined;
  /** `[mqtt] ca_file`. */
  readonly ca: Buffer | undefined;
}

function createReplicator(config: Config, logger: Logger, { store, limits, presence, broker, ca }: ReplicatorParts): Replicator {
  // A node that runs the broker talks to it directly, whatever broker_address says (the other nodes
  // use broker_address to reach it).
  const mqtt = broker
    ? { ...config.mqtt, broker_address: `mqtt://${hostForUrl(broker.address.address)}:${broker.address.port}` }
    : config.mqtt;
  return new Replicator({
    store,
    nodeId: config.node_id,
    mqtt,
    limits,
    logger,
    clusterSecret: config.cluster_secret,
    presence,
    version: VERSION,
    ...(ca === undefined ? {} : { ca }),
    ...(broker ? { protocolVersion: 4 as const } : {}),
  });
}

interface AntiEntropyParts {
  readonly store: Store;
  readonly limits: Limits;
  readonly peerProof: PeerProof;
  readonly presence: Presence;
  readonly replicator: Replicator | undefined;
  readonly tls: TlsSetup | undefined;
}

function createAntiEntropy(config: Config, logger: Logger, { store, limits, peerProof, presence, replicator, tls }: AntiEntropyParts): AntiEntropy {
  return new AntiEntropy({
    store,
    nodeId: config.node_id,
    limits,
    proof: peerProof,
    enabled: config.anti_entropy.enabled,
    ...antiEntropySettings(config, tls?.client),
    presence,
    brokerConnected: () => replicator?.stats.connected === true,
    logger,
  });
}

interface ListenerParts {
  readonly store: Store;
  readonly limits: Limits;
  readonly replicator: Replicator | undefined;
  readonly antiEntropy: AntiEntropy;
  readonly peerProof: PeerProof;
  readonly tls: TlsSetup | undefined;
  readonly backups: Backups;
  readonly capacity: Capacity;
  /** CONFIG RELOAD. */
  readonly reloads: Reloads;
}

/** What the commands may touch, the client port's server and the memcached listener (none listening yet). */
function createListeners(config: Config, logger: Logger, parts: ListenerParts): { ctx: Context; server: KvServer; memcached: MemcachedListener | undefined } {
  const { store, capacity, limits, replicator, antiEntropy, peerProof, tls, backups } = parts;
  const ctx: Context = {
    store,
    capacity,
    backups,
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
    reloadConfig: () => parts.reloads.reload(),
    adminCommands: config.security.admin_commands,
    sectionStats: {
      replication: () => replicator?.statsLines() ?? ['replication_enabled:0'],
      // Records this node served to peers that started exchanges (in AE.GET and AE.DIFF answers).
      antientropy: () => [...antiEntropy.statsLines(), `anti_entropy_keys_served:${ctx.stats.antiEntropyServed}`],
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
  const memcached = config.memcached.enabled
    ? new MemcachedListener({
        ctx,
        logger,
        maxConnections: config.network.max_connections,
        idleTimeoutMs: config.network.connection_timeout * 1000,
        itemSizeMax: config.memcached.item_size_max,
        tls: tls?.server,
      })
    : undefined;
  return { ctx, server, memcached };
}

interface MetricsParts {
  readonly ctx: Context;
  readonly replicator: Replicator | undefined;
  readonly antiEntropy: AntiEntropy;
  readonly server: KvServer;
  /** Says whether the node is stopping. */
  readonly teardown: Teardown;
}

function createMetrics(logger: Logger, { ctx, replicator, antiEntropy, server, teardown }: MetricsParts): MetricsServer {
  return new MetricsServer(
    createRegistry({ stats: ctx.stats, store: ctx.store, capacity: ctx.capacity, antiEntropy, replicator, connections: () => server.connectionCount }),
    {
      health: () => [
        ...(teardown.stopping ? ['stopping'] : []),
        ...(ctx.capacity.over ? ['storage over memory_limit_mb: client writes that grow the data are refused'] : []),
        ...(replicator !== undefined && !replicator.stats.connected ? ['not connected to the replication broker'] : []),
      ],
      ready: () => (teardown.stopping ? ['stopping'] : []),
    },
    logger,
  );
}

interface Listening {
  readonly address: AddressInfo;
  readonly memcachedAddress: AddressInfo | undefined;
  readonly metricsAddress: AddressInfo | undefined;
  readonly tls: boolean;
  readonly store: Store;
  readonly ctx: Context;
}

/** Says where the node listens, and warns of ports anyone can use. */
function announce(logger: Logger, { address, memcachedAddress, metricsAddress, tls, store, ctx }: Listening): void {
  if (memcachedAddress !== undefined) {
    logger.info({ address: memcachedAddress.address, port: memcachedAddress.port }, 'memcached listener listening');
    if (!isLoopbackAddress(memcachedAddress.address)) {
      logger.warn({ address: memcachedAddress.address }, "the memcached listener has no AUTH (memcached's text protocol has none): anyone who can reach it can read and write");
    }
  }
  if (metricsAddress !== undefined) logger.info({ address: metricsAddress.address, port: metricsAddress.port }, 'metrics listening (/metrics, /health, /ready)');
  const persistence = store.figures().persistence;
  logger.info({ address: address.address, port: address.port, tls, path: store.path, persistence, keys: store.size }, 'node listening');
  if (!ctx.auth.required && !isLoopbackAddress(address.address)) {
    logger.warn(
      { address: address.address, port: address.port },
      'listening on a non-loopback address with no password: anyone who can reach this port can read and write; set [security] password or users',
    );
  }
}

/**
 * Where the other nodes are told to reach this node's client port (its presence status): `[network]
 * advertise_address`, or else the address and port it listens on; bound to every interface, 127.0.0.1,
 * which reaches it from its own host only.
 */
function advertised(config: Config, address: AddressInfo, logger: Logger): string {
  if (config.network.advertise_address !== '') return config.network.advertise_address;
  const wildcard = address.address === '0.0.0.0' || address.address === '::';
  const host = wildcard ? '127.0.0.1' : address.address;
  const result = host.includes(':') ? `[${host}]:${address.port}` : `${host}:${address.port}`;
  if (wildcard) {
    logger.info({ advertised: result }, 'listening on every interface: other nodes are told to dial 127.0.0.1; set [network] advertise_address to an address they can reach');
  }
  return result;
}

function hostForUrl(address: string): string {
  if (address === '0.0.0.0') return '127.0.0.1';
  if (address === '::') return '[::1]';
  return address.includes(':') ? `[${address}]` : address;
}
