/** The node's configuration (DESIGN.md section 3), after defaults, file, environment and flags. */
export interface Config {
  node_id: string;
  description: string;
  cluster_secret: string;
  network: {
    bind_address: string;
    bind_port: number;
    max_connections: number;
    connection_timeout: number;
    /** `host:port` the other nodes should dial (presence); empty: the bound address and port. */
    advertise_address: string;
    tls: TlsConfig;
  };
  security: {
    password: string;
    admin_commands: boolean;
    users: Record<string, UserConfig>;
  };
  mqtt: {
    enabled: boolean;
    broker_address: string;
    topic_prefix: string;
    client_id: string;
    username: string;
    password: string;
    ca_file: string;
    keep_alive: number;
    clean_session: boolean;
    embedded: { enabled: boolean; bind_address: string; port: number };
  };
  anti_entropy: {
    enabled: boolean;
    interval_seconds: number;
    peer_list: string[];
    max_concurrent_syncs: number;
    discover_peers: boolean;
    /** Seconds between re-readings of who the peers are (`peer_list`, and the nodes the broker reports). */
    peer_discovery_interval: number;
    segment_bits: number;
  };
  storage: {
    path: string;
    max_key_bytes: number;
    max_value_bytes: number;
    tombstone_grace_seconds: number;
    max_clock_skew_ms: number;
    fsync: FsyncMode;
    fsync_period_ms: number;
    /** false: a cache node (store/cache.ts): its data in a fresh temporary directory, `path` ignored, nothing synced. */
    persistence_enabled: boolean;
    memory_limit_mb: number;
    backup_interval_hours: number;
    backup_path: string;
    backup_keep: number;
  };
  memcached: {
    enabled: boolean;
    bind_address: string;
    port: number;
    item_size_max: number;
  };
  metrics: {
    enabled: boolean;
    bind_address: string;
    port: number;
  };
  logging: {
    level: LogLevel;
    format: 'json' | 'text';
    file_path: string;
  };
}

/** `[network.tls]`: the client port over TLS; `ca_file` set: clients must present a certificate it signed. */
export interface TlsConfig {
  enabled: boolean;
  cert_file: string;
  key_file: string;
  ca_file: string;
}

/** A named client user (`[security.users.<name>]`): `AUTH <name> <password>` grants `role`. */
export interface UserConfig {
  password: string;
  role: Role;
}

export const ROLES = ['read', 'write', 'admin'] as const;
export type Role = (typeof ROLES)[number];
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const;
export const FSYNC_MODES = ['periodic', 'always'] as const;
export type FsyncMode = (typeof FSYNC_MODES)[number];
export type LogLevel = (typeof LOG_LEVELS)[number];

/** How one leaf of the config is typed, checked and defaulted. */
export type Field =
  | { readonly type: 'string'; readonly default: string; readonly nonEmpty?: boolean }
  | { readonly type: 'int'; readonly default: number; readonly min: number; readonly max: number }
  | { readonly type: 'bool'; readonly default: boolean }
  | { readonly type: 'strings'; readonly default: readonly string[] }
  | { readonly type: 'enum'; readonly default: string; readonly values: readonly string[] }
  /** A table of tables, one per user name (in the environment or a flag: the same as JSON). */
  | { readonly type: 'users'; readonly default: Readonly<Record<string, UserConfig>> };

const str = (d: string, nonEmpty = false): Field => ({ type: 'string', default: d, nonEmpty });
const int = (d: number, min: number, max: number): Field => ({ type: 'int', default: d, min, max });
const bool = (d: boolean): Field => ({ type: 'bool', default: d });

/**
 * Every accepted key, by dotted path. Anything else in a file or a MERKLE_KV_* variable is an error,
 * so a typo never silently falls back to a default.
 * Empty defaults of `mqtt.client_id`, `storage.path` and `storage.backup_path` are derived from `node_id` in `finish()`.
 */
export const FIELDS: Readonly<Record<string, Field>> = {
  node_id: str('', true),
  description: str(''),
  cluster_secret: str(''),
  'network.bind_address': str('127.0.0.1', true),
  'network.bind_port': int(7878, 0, 65535),
  'network.max_connections': int(1000, 1, 1_000_000),
  'network.connection_timeout': int(30, 0, 86_400 * 365),
  // What this node's presence status tells the others to dial (anti-entropy discovery); empty: the bound
  // address and port (127.0.0.1 for a wildcard bind). Set it for nodes bound to 0.0.0.0 or behind NAT.
  'network.advertise_address': str(''),
  'network.tls.enabled': bool(false),
  'network.tls.cert_file': str(''),
  'network.tls.key_file': str(''),
  'network.tls.ca_file': str(''),
  // Client authentication (DESIGN.md section 7); empty password and no users: no AUTH needed.
  'security.password': str(''),
  'security.admin_commands': bool(true),
  'security.users': { type: 'users', default: {} },
  'mqtt.enabled': bool(true),
  'mqtt.broker_address': str('tcp://127.0.0.1:1883', true),
  'mqtt.topic_prefix': str('merkle-kv', true),
  'mqtt.client_id': str(''),
  'mqtt.username': str(''),
  'mqtt.password': str(''),
  // PEM CA bundle for an mqtts:// broker whose certificate a private CA signed.
  'mqtt.ca_file': str(''),
  'mqtt.keep_alive': int(60, 0, 65535),
  'mqtt.clean_session': bool(false),
  'mqtt.embedded.enabled': bool(false),
  'mqtt.embedded.bind_address': str('127.0.0.1', true),
  'mqtt.embedded.port': int(1883, 0, 65535),
  'anti_entropy.enabled': bool(true),
  'anti_entropy.interval_seconds': int(60, 1, 86_400),
  'anti_entropy.peer_list': { type: 'strings', default: [] },
  'anti_entropy.max_concurrent_syncs': int(3, 1, 64),
  // Also exchange with the nodes whose presence status on the broker is online (signed, with a secret).
  'anti_entropy.discover_peers': bool(true),
  // Seconds between re-readings of who the peers are (the reference's name and default); a node that has
  // not caught up yet takes in every node it hears of at once.
  'anti_entropy.peer_discovery_interval': int(600, 1, 86_400),
  // Merkle segments = 2^segment_bits; a multiple of 4 (the tree is 16-ary). The same on every node.
  'anti_entropy.segment_bits': int(16, 4, 20),
  'storage.path': str(''),
  // LMDB's own key limit is 1978 bytes, and the key-hash index prefixes the key with 8 bytes.
  'storage.max_key_bytes': int(512, 1, 1970),
  'storage.max_value_bytes': int(1_048_576, 1, 64 * 1_048_576),
  'storage.tombstone_grace_seconds': int(86_400, 1, 86_400 * 3650),
  'storage.max_clock_skew_ms': int(60_000, 0, 86_400_000),
  // "periodic": OK once the write is in the OS, fdatasync every fsync_period_ms; "always": OK once on disk.
  'storage.fsync': { type: 'enum', default: 'periodic', values: FSYNC_MODES },
  'storage.fsync_period_ms': int(100, 1, 60_000),
  // false: a cache node, as the reference's in-memory store: wiped at every start, refilled from its peers.
  'storage.persistence_enabled': bool(true),
  // Client writes that would take the live data past this many MiB get ERROR Storage full (store/capacity.ts); 0 none.
  'storage.memory_limit_mb': int(0, 0, 1024 * 1024),
  // Live backups on a schedule (backups.ts): 0 none; each in a new directory under backup_path
  // (empty: ./backups/<node_id>), the newest backup_keep kept.
  'storage.backup_interval_hours': int(0, 0, 24 * 365),
  'storage.backup_path': str(''),
  'storage.backup_keep': int(3, 1, 10_000),
  // A second listener speaking memcached's text protocol, on the same store (memcached/).
  'memcached.enabled': bool(false),
  'memcached.bind_address': str('127.0.0.1', true),
  'memcached.port': int(11211, 0, 65535),
  // memcached's -I: the largest item, counting its key and memcached's header (memcached/parser.ts).
  'memcached.item_size_max': int(1_048_576, 1024, 1024 * 1_048_576),
  // Prometheus /metrics, /health and /ready over HTTP (metrics/http.ts).
  'metrics.enabled': bool(false),
  'metrics.bind_address': str('127.0.0.1', true),
  'metrics.port': int(9178, 0, 65535),
  'logging.level': { type: 'enum', default: 'info', values: LOG_LEVELS },
  'logging.format': { type: 'enum', default: 'json', values: ['json', 'text'] },
  'logging.file_path': str(''),
};

/** `network.bind_port` -> `MERKLE_KV_NETWORK_BIND_PORT` */
export function envName(path: string): string {
  return 'MERKLE_KV_' + path.replaceAll('.', '_').toUpperCase();
}
