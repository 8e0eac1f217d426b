import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { duplexPair, type Duplex } from 'node:stream';
import { AntiEntropy } from '../src/antientropy/antientropy.js';
import { Backups } from '../src/backups.js';
import { Stats, type Context } from '../src/commands/context.js';
import { LineDialect } from '../src/commands/dialect.js';
import { COMMAND_NAMES } from '../src/commands/index.js';
import type { Limits } from '../src/rules.js';
import { Authenticator } from '../src/security/auth.js';
import { PeerProof } from '../src/antientropy/handshake.js';
import { KvServer, type ServerOptions } from '../src/server/server.js';
import { Capacity, Store } from '../src/store/index.js';
import { silent } from './helpers.js';

/** A server with no listener over its own store; clients are `duplexPair()` streams. */
export interface StreamServer {
  readonly server: KvServer;
  /** A new client stream. Like a TCP peer whose application closes once the server has. */
  readonly open: () => Duplex;
  readonly close: () => Promise<void>;
}

/** `overrides` may set `maxLineBytes`, the line protocol's frame limit, beside any server option. */
export function streamServer(limits: Limits, overrides: Partial<ServerOptions> & { maxLineBytes?: number } = {}): StreamServer {
  const { maxLineBytes = limits.maxValueBytes + limits.maxKeyBytes + 64, ...options } = overrides;
  const dir = mkdtempSync(join(tmpdir(), 'merkle-kv-streams-'));
  const capacity = new Capacity();
  const store = Store.open({ path: join(dir, 'db'), nodeId: 't', maxClockSkewMs: 60_000, tombstoneGraceSeconds: 86_400, logger: silent, capacity });
  const ctx: Context = {
    store,
    stats: new Stats(COMMAND_NAMES),
    limits,
    nodeId: 't',
    version: '0.0.0',
    currentConnections: () => server.connectionCount,
    clients: () => server.clients(),
    replication: undefined,
    capacity,
    backups: new Backups(store, { path: join(dir, 'backups'), keep: 3, intervalHours: 0 }, silent),
    sectionStats: { replication: () => [], antientropy: () => [], peers: () => [] },
    antiEntropy: new AntiEntropy({
      store,
      nodeId: 't',
      limits,
      proof: new PeerProof(''),
      enabled: false,
      peers: [],
      intervalMs: 60_000,
      maxConcurrent: 1,
      logger: silent,
    }),
    peerProof: new PeerProof(''),
    auth: new Authenticator({ password: '', users: {} }),
    adminCommands: true,
  };
  const server = new KvServer({
    ctx,
    logger: silent,
    maxConnections: 100,
    dialect: () => new LineDialect(ctx, silent, maxLineBytes),
    idleTimeoutMs: 0,
    ...options,
  });
  const clients: Duplex[] = [];
  return {
    server,
    open: () => {
      const [client, serverSide] = duplexPair();
      server.handle(serverSide);
      client.once('end', () => client.end());
      clients.push(client);
      return client;
    },
    close: async () => {
      for (const c of clients) c.destroy();
      await server.close(100);
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
