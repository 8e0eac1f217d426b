import type { ConnectionOptions } from 'node:tls';
import type { Logger } from 'pino';
import type { AntiEntropy, AntiEntropySettings } from './antientropy/antientropy.js';
import type { Reloads } from './config/reload.js';
import type { Config } from './config/schema.js';
import type { MemcachedListener } from './memcached/listener.js';
import type { Authenticator } from './security/auth.js';
import { loadTls, readPem, type TlsSetup } from './security/tls.js';
import type { KvServer } from './server/server.js';

/*
 * The settings a running node takes from a config reload (config/reload.ts), each applied by the part
 * it belongs to. Every other changed key needs a restart (ports, addresses, paths, node_id, ...).
 */

/** The parts whose settings change live. */
export interface LiveParts {
  readonly logger: Logger;
  readonly auth: Authenticator;
  readonly server: KvServer;
  readonly memcached: MemcachedListener | undefined;
  readonly antiEntropy: AntiEntropy;
  /** `[network.tls]` as read at start; undefined: the ports serve plain TCP. */
  readonly tls: TlsSetup | undefined;
}

/** The keys the anti-entropy settings come from. */
const ANTI_ENTROPY_KEYS = [
  'anti_entropy.peer_list',
  'anti_entropy.interval_seconds',
  'anti_entropy.max_concurrent_syncs',
  'anti_entropy.discover_peers',
  'anti_entropy.peer_discovery_interval',
];
const TLS_KEYS = ['network.tls.enabled', 'network.tls.cert_file', 'network.tls.key_file', 'network.tls.ca_file'];

/** `[anti_entropy]`'s live settings; `tls`: how peers are dialled. */
export function antiEntropySettings(config: Config, tls: ConnectionOptions | undefined): AntiEntropySettings {
  const ae = config.anti_entropy;
  return {
    peers: ae.peer_list,
    intervalMs: ae.interval_seconds * 1000,
    maxConcurrent: ae.max_concurrent_syncs,
    discover: ae.discover_peers,
    discoveryIntervalMs: ae.peer_discovery_interval * 1000,
    tls,
  };
}

/** Registers the node's live settings with `reloads`. */
export function registerLive(reloads: Reloads, parts: LiveParts): void {
  const { logger, auth, server, memcached, antiEntropy } = parts;
  // Peers are dialled with this node's certificate: renewed with it.
  let peerTls = parts.tls?.client;
  // Nothing reads the description while the node runs.
  reloads.onReload(['description'], () => {});
  reloads.onReload(['logging.level'], (next) => {
    logger.level = next.logging.level;
  });
  // New connections and AUTH attempts check the new accounts; connections keep what they proved.
  reloads.onReload(['security.password', 'security.users'], (next) => auth.setAccounts(next.security));
  reloads.onReload(['network.max_connections', 'network.connection_timeout'], (next) => {
    const limits = { maxConnections: next.network.max_connections, idleTimeoutMs: next.network.connection_timeout * 1000 };
    server.configure(limits);
    memcached?.configure(limits);
  });
  reloads.onReload(ANTI_ENTROPY_KEYS, (next) => antiEntropy.configure(antiEntropySettings(next, peerTls)));

  // Certificates rotate without a restart: the files are read and checked before anything is applied.
  let renewed: TlsSetup | undefined;
  reloads.onReload(
    TLS_KEYS,
    (next, prev) => {
      // Switched on or off, the listeners change at the restart; with TLS off nothing reads the files.
      if (prev.network.tls.enabled !== next.network.tls.enabled) return TLS_KEYS;
      if (renewed === undefined) return [];
      server.setSecureContext(renewed.server);
      memcached?.server.setSecureContext(renewed.server);
      peerTls = renewed.client;
      antiEntropy.configure(antiEntropySettings(next, peerTls));
      renewed = undefined;
      return sameCaSetting(prev, next) ? [] : ['network.tls.ca_file'];
    },
    (next, prev) => {
      renewed = undefined;
      if (!next.network.tls.enabled) return;
      // What a restart would read: refused now rather than then.
      const checked = loadTls(next.network.tls);
      if (!prev.network.tls.enabled) return;
      // Whether clients must present a certificate is the listener's own setting, made at start: a CA
      // switched on or off waits for the restart, and until then the running one stays in force.
      renewed = sameCaSetting(prev, next) ? checked : loadTls({ ...next.network.tls, ca_file: prev.network.tls.ca_file });
    },
  );
  // Read at start only (the broker connection): a change needs a restart, but a file that cannot be read is refused now.
  reloads.onReload(
    ['mqtt.ca_file'],
    () => ['mqtt.ca_file'],
    (next) => {
      if (next.mqtt.ca_file !== '') readPem(next.mqtt.ca_file, 'mqtt.ca_file');
    },
  );
}

/** Whether both configurations ask clients for a certificate, or neither does. */
function sameCaSetting(prev: Config, next: Config): boolean {
  return (prev.network.tls.ca_file === '') === (next.network.tls.ca_file === '');
}
