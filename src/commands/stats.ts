import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Command, Context } from './context.js';

export interface StatsRequest {
  readonly kind: 'stats';
  /** The word the client used, echoed as the header line. */
  readonly header: 'STATS' | 'INFO';
  /** STATS only: which block (DESIGN.md section 2: each block under 1 KiB). */
  readonly section: StatsSection;
}

/** `STATS [section]`: the general block (the default), one subsystem's, or all of them. */
export const STATS_SECTIONS = ['general', 'storage', 'replication', 'antientropy', 'peers', 'all'] as const;
export type StatsSection = (typeof STATS_SECTIONS)[number];

/**
 * The MerkleKV reference project's command counters (its STATS), by the commands each one counts.
 * Commands it did not have (sets, expiry, AUTH, ...) count only in `total_commands`.
 */
export const REFERENCE_GROUPS: readonly (readonly [string, readonly string[]])[] = [
  ['get_commands', ['GET']],
  ['scan_commands', ['SCAN']],
  ['set_commands', ['SET', 'SETEX']],
  ['delete_commands', ['DEL']],
  ['numeric_commands', ['INC', 'DEC']],
  ['string_commands', ['APPEND', 'PREPEND']],
  ['bulk_commands', ['MGET', 'MSET', 'TRUNCATE']],
  ['stat_commands', ['STATS', 'INFO', 'PING']],
  ['management_commands', ['VERSION']],
];

/** The `name:value` lines of a STATS section. */
export function statsLines(ctx: Context, section: StatsSection): string[] {
  switch (section) {
    case 'general':
      return generalLines(ctx);
    case 'storage':
      return storageLines(ctx);
    case 'replication':
      return ctx.sectionStats.replication();
    case 'antientropy':
      return ctx.sectionStats.antientropy();
    case 'peers':
      return ctx.sectionStats.peers();
    case 'all':
      return STATS_SECTIONS.filter((s) => s !== 'all').flatMap((s) => statsLines(ctx, s));
  }
}

/** The write path's state: the durability mode and how far the disk and LMDB are behind. */
function storageLines(ctx: Context): string[] {
  const f = ctx.store.figures();
  const b = ctx.backups.figures();
  return [
    `storage_fsync:${f.fsync}`,
    `storage_persistence:${f.persistence}`,
    `storage_sync_lag_ms:${f.syncLagMs}`,
    `storage_syncs:${f.syncs}`,
    `storage_pending_writes:${f.pendingWrites}`,
    `storage_pending_bytes:${f.pendingBytes}`,
    `storage_lmdb_lag_ms:${f.lmdbLagMs}`,
    `storage_lmdb_batches:${f.lmdbBatches}`,
    `storage_lmdb_failures:${f.lmdbFailures}`,
    // [storage] memory_limit_mb: the data it counts, the limit (0 none), over it (replicated writes can take it there), client writes refused.
    `storage_data_bytes:${ctx.capacity.usedBytes}`,
    `storage_memory_limit_bytes:${ctx.capacity.limitBytes}`,
    `storage_over_limit:${ctx.capacity.over ? 1 : 0}`,
    `storage_full_refusals:${ctx.capacity.refused}`,
    // BACKUP and the scheduled ones: taken, failed, when the last good one began (Unix seconds, 0 none).
    `storage_backups:${b.taken}`,
    `storage_backup_failures:${b.failed}`,
    `storage_backup_running:${b.running ? 1 : 0}`,
    `storage_last_backup_unix:${Math.floor(b.lastAt / 1000)}`,
  ];
}

/** Ours, then the reference's names: under 1 KiB, so a client reading 1 KiB at once gets it whole. */
function generalLines(ctx: Context): string[] {
  const s = ctx.stats;
  const f = ctx.store.figures();
  const uptime = uptimeSeconds(ctx);
  return [
    `node_id:${ctx.nodeId}`,
    `version:${ctx.version}`,
    `uptime_seconds:${uptime}`,
    `connections_current:${ctx.currentConnections()}`,
    `connections_total:${s.connectionsTotal}`,
    `connections_rejected:${s.connectionsRejected}`,
    `commands_total:${s.commands}`,
    `get_hits:${s.getHits}`,
    `get_misses:${s.getMisses}`,
    `writes_total:${s.writes}`,
    `errors_total:${s.errors}`,
    `auth_required:${ctx.auth.required ? 1 : 0}`,
    `auth_failures:${s.authFailures}`,
    `tls_handshake_failures:${s.tlsHandshakeFailures}`,
    `bytes_in:${s.bytesIn}`,
    `bytes_out:${s.bytesOut}`,
    `keys:${f.keys}`,
    `tombstones:${f.tombstones}`,
    `expiring_keys:${f.expiring}`,
    `memory_rss_bytes:${process.memoryUsage.rss()}`,
    // The reference's names for what it counts.
    `uptime:${humanUptime(uptime)}`,
    `total_connections:${s.connectionsTotal}`,
    `active_connections:${ctx.currentConnections()}`,
    `total_commands:${s.commands}`,
    ...REFERENCE_GROUPS.map(([name, commands]) => `${name}:${commands.reduce((n, c) => n + s.callsOf(c), 0)}`),
    `used_memory_kb:${Math.round(process.memoryUsage.rss() / 1024)}`,
  ];
}

/** INFO: the reference's layout (version, uptimes, server time, key count), then who this node is. */
export function infoLines(ctx: Context): string[] {
  const uptime = uptimeSeconds(ctx);
  return [
    `version:${ctx.version}`,
    `uptime_seconds:${uptime}`,
    `uptime:${humanUptime(uptime)}`,
    `server_time_unix:${Math.floor(Date.now() / 1000)}`,
    `db_keys:${ctx.store.size}`,
    `node_id:${ctx.nodeId}`,
    `tombstones:${ctx.store.tombstoneCount}`,
    `connections_current:${ctx.currentConnections()}`,
    `memory_rss_bytes:${process.memoryUsage.rss()}`,
  ];
}

function uptimeSeconds(ctx: Context): number {
  return Math.floor((Date.now() - ctx.stats.startedAt) / 1000);
}

/** As the reference writes it: `1d 2h 3m 4s`. */
export function humanUptime(seconds: number): string {
  return `${Math.floor(seconds / 86_400)}d ${Math.floor((seconds % 86_400) / 3600)}h ${Math.floor((seconds % 3600) / 60)}m ${seconds % 60}s`;
}

function execute(req: StatsRequest, ctx: Context, out: Output): undefined {
  out.line(req.header);
  for (const line of req.header === 'STATS' ? statsLines(ctx, req.section) : infoLines(ctx)) out.utf8Line(line);
  out.line('END');
}

export const stats = {
  names: ['STATS'],
  access: 'read',
  requires: `at most a section (${STATS_SECTIONS.join(', ')})`,
  parse(args: Args): StatsRequest {
    const word = args.word()?.toString('latin1').toLowerCase() ?? 'general';
    args.end();
    const section = STATS_SECTIONS.find((s) => s === word);
    if (section === undefined) throw args.usage();
    return { kind: 'stats', header: 'STATS', section };
  },
  execute,
} as const satisfies Command<StatsRequest>;

export const info = {
  names: ['INFO'],
  access: 'read',
  requires: 'no arguments',
  parse(args: Args): StatsRequest {
    args.end();
    return { kind: 'stats', header: 'INFO', section: 'general' };
  },
  execute,
} as const satisfies Command<StatsRequest>;
