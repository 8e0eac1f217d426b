import type { ConnectionOptions } from 'node:tls';
import type { Logger } from 'pino';
import type { Presence } from '../replication/presence.js';
import type { Limits } from '../rules.js';
import type { Store } from '../store/index.js';
import type { PeerProof } from './handshake.js';

/** What a config reload may change while the node runs (`[anti_entropy]`, and the TLS files peers are dialled with). */
export interface AntiEntropySettings {
  /** `host:port` of each peer's client port (`peer_list`). */
  readonly peers: readonly string[];
  readonly intervalMs: number;
  readonly maxConcurrent: number;
  /** Also exchange with the nodes `presence` reports (`discover_peers`), at the address each advertises. */
  readonly discover?: boolean;
  /**
   * How often the peers are re-read (`peer_discovery_interval`): `peers` and, with `discover`, the nodes
   * `presence` reports. A node the broker reports in between joins at the next refresh, unless this node has
   * not caught up yet. Undefined: every node is taken in as soon as it is heard of.
   */
  readonly discoveryIntervalMs?: number | undefined;
  /** Peers' client ports serve TLS (this node's does): how to connect to them. */
  readonly tls?: ConnectionOptions | undefined;
}

export interface AntiEntropyOptions extends AntiEntropySettings {
  readonly store: Store;
  readonly nodeId: string;
  readonly limits: Limits;
  /** Proves this node to each peer and checks the peer's proof before an exchange. */
  readonly proof: PeerProof;
  /** Run exchanges on a timer (`[anti_entropy] enabled`); SYNC works either way. */
  readonly enabled: boolean;
  readonly logger: Logger;
  /** Connect and per-reply timeout. */
  readonly timeoutMs?: number;
  /** The other nodes' presence (replication/presence.ts): offline peers are skipped, returning ones synced at once. */
  readonly presence?: Presence;
  /** Whether this node hears the broker now: only then does an offline status count. */
  readonly brokerConnected?: () => boolean;
}
