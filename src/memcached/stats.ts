import { statfsSync } from 'node:fs';
import type { McCounters } from './commands.js';

/** What the memcached listener's `stats` reports from, beside its counters. */
export interface McStatsSource {
  readonly counters: McCounters;
  readonly version: string;
  readonly startedAt: number;
  readonly maxConnections: number;
  readonly currentConnections: number;
  /** Node-wide: both listeners' connections. */
  readonly totalConnections: number;
  readonly rejectedConnections: number;
  readonly items: number;
  /** Bytes the store's data file takes. */
  readonly bytes: number;
  /** The store's directory: its file system bounds how much it can hold. */
  readonly dataDir: string;
  readonly port: number;
  readonly bindAddress: string;
  /** This listener's own traffic (Traffic): bytes read and written, batches cut at maxBatch. */
  readonly bytesRead: number;
  readonly bytesWritten: number;
  readonly yields: number;
  readonly itemSizeMax: number;
  readonly idleTimeoutSeconds: number;
  readonly tls: boolean;
}

type Pairs = [string, string | number][];

/**
 * `stats`, `stats settings`, `stats items`, `stats slabs` and `stats sizes` under memcached's names, with
 * what they mean for a store that keeps everything on disk and never evicts: `limit_maxbytes` is what the
 * store's file system can hold (its data file plus the free space), the slab and item groups are empty.
 * Undefined for a group memcached does not have (memcached answers ERROR). Exporters read `stats` and
 * `stats settings`; the cas_* counters must be there for them.
 */
export function memcachedStats(group: string | undefined, s: McStatsSource): Pairs | undefined {
  switch (group) {
    case undefined:
      return general(s);
    case 'settings':
      return settings(s);
    case 'items':
      return [];
    case 'slabs':
      return [
        ['active_slabs', 0],
        ['total_malloced', 0],
      ];
    case 'sizes':
      return [['sizes_status', 'disabled']];
    default:
      return undefined;
  }
}

function general(s: McStatsSource): Pairs {
  const c = s.counters;
  const cpu = process.cpuUsage();
  const seconds = (us: number): string => (us / 1e6).toFixed(6);
  return [
    ['pid', process.pid],
    ['uptime', Math.floor((Date.now() - s.startedAt) / 1000)],
    ['time', Math.floor(Date.now() / 1000)],
    ['version', s.version],
    ['pointer_size', 64],
    ['rusage_user', seconds(cpu.user)],
    ['rusage_system', seconds(cpu.system)],
    ['max_connections', s.maxConnections],
    ['curr_connections', s.currentConnections],
    ['total_connections', s.totalConnections],
    ['rejected_connections', s.rejectedConnections],
    // One connection object per open connection, none kept for reuse.
    ['connection_structures', s.currentConnections],
    ['cmd_get', c.cmdGet],
    ['cmd_set', c.cmdSet],
    ['cmd_flush', c.cmdFlush],
    ['cmd_touch', c.cmdTouch],
    // The meta commands (mg, ms, ...) are not served: they get ERROR.
    ['cmd_meta', 0],
    ['get_hits', c.getHits],
    ['get_misses', c.getMisses],
    ['get_expired', c.getExpired],
    // flush_all removes items at once: no get ever finds one it made invalid.
    ['get_flushed', 0],
    ['delete_misses', c.deleteMisses],
    ['delete_hits', c.deleteHits],
    ['incr_misses', c.incrMisses],
    ['incr_hits', c.incrHits],
    ['decr_misses', c.decrMisses],
    ['decr_hits', c.decrHits],
    ['cas_misses', c.casMisses],
    ['cas_hits', c.casHits],
    ['cas_badval', c.casBadval],
    ['touch_hits', c.touchHits],
    ['touch_misses', c.touchMisses],
    ['store_too_large', c.storeTooLarge],
    // Stores refused by [storage] memory_limit_mb.
    ['store_no_memory', c.storeNoMemory],
    // The text protocol has no authentication here (auth_enabled_ascii no).
    ['auth_cmds', 0],
    ['auth_errors', 0],
    ['bytes_read', s.bytesRead],
    ['bytes_written', s.bytesWritten],
    ['limit_maxbytes', limitBytes(s)],
    ['accepting_conns', 1],
    // Past max_connections a connection is refused (rejected_connections); accepting never stops.
    ['listen_disabled_num', 0],
    ['time_in_listen_disabled_us', 0],
    ['threads', 1],
    // A connection's batch stopped at 1,024 requests (memcached's -R) to let the others run.
    ['conn_yields', s.yields],
    ['bytes', s.bytes],
    ['curr_items', s.items],
    ['total_items', c.totalItems],
    // Nothing is evicted: the store keeps every item until it is deleted or expires.
    ['evicted_unfetched', 0],
    ['evicted_active', 0],
    ['evictions', 0],
    ['reclaimed', 0],
  ];
}

function settings(s: McStatsSource): Pairs {
  return [
    ['maxbytes', limitBytes(s)],
    ['maxconns', s.maxConnections],
    ['tcpport', s.port],
    ['udpport', 0],
    ['inter', s.bindAddress],
    ['evictions', 'off'],
    ['num_threads', 1],
    ['cas_enabled', 'yes'],
    ['binding_protocol', 'ascii'],
    ['auth_enabled_sasl', 'no'],
    ['auth_enabled_ascii', 'no'],
    ['item_size_max', s.itemSizeMax],
    ['flush_enabled', 'yes'],
    ['idle_timeout', s.idleTimeoutSeconds],
    ['ssl_enabled', s.tls ? 'yes' : 'no'],
  ];
}

/** The data file plus what its file system has free for it: the most the store could hold now. */
function limitBytes(s: McStatsSource): number {
  try {
    const fs = statfsSync(s.dataDir);
    return s.bytes + fs.bavail * fs.bsize;
  } catch {
    return s.bytes;
  }
}
