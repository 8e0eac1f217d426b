import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { Stats, type Context } from './commands/context.js';
import type { Config } from './config/schema.js';
import { KvServer } from './server/server.js';
import { Store } from './store/store.js';
import { VERSION } from './version.js';

export interface RunningNode {
  readonly address: AddressInfo;
  readonly store: Store;
  readonly server: KvServer;
  /** Stops accepting, answers what is in flight, closes LMDB. */
  stop(): Promise<void>;
}

/** Line bytes beyond the largest value: command word, key and separators (issue #2: max_value_bytes + 1 KiB). */
const LINE_OVERHEAD = 1024;

/** Opens the store and starts serving clients; everything one node is, wired together. */
export async function startNode(config: Config, logger: Logger): Promise<RunningNode> {
  const store = Store.open({
    path: config.storage.path,
    nodeId: config.node_id,
    maxClockSkewMs: config.storage.max_clock_skew_ms,
    tombstoneGraceSeconds: config.storage.tombstone_grace_seconds,
    logger,
  });
  const limits = {
    maxKeyBytes: config.storage.max_key_bytes,
    maxValueBytes: config.storage.max_value_bytes,
  };
  const ctx: Context = {
    store,
    stats: new Stats(),
    limits,
    nodeId: config.node_id,
    version: VERSION,
    currentConnections: () => server.connectionCount,
  };
  const server = new KvServer({
    ctx,
    logger,
    maxConnections: config.network.max_connections,
    maxLineBytes: limits.maxValueBytes + limits.maxKeyBytes + LINE_OVERHEAD,
    idleTimeoutMs: config.network.connection_timeout * 1000,
  });
  let address: AddressInfo;
  try {
    address = await server.listen(config.network.bind_port, config.network.bind_address);
  } catch (err) {
    await store.close();
    throw err;
  }
  logger.info(
    { address: address.address, port: address.port, path: config.storage.path, keys: store.size },
    'node listening',
  );
  return {
    address,
    store,
    server,
    async stop() {
      await server.close();
      await store.close();
      logger.info('node stopped');
    },
  };
}
