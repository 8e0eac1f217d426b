import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Command, Context } from './context.js';

export interface StatsRequest {
  readonly kind: 'stats';
  /** The word the client used, echoed as the header line. */
  readonly header: 'STATS' | 'INFO';
}

/** `name:value` pairs; kept under 1 KiB (DESIGN.md section 2). */
export function statsLines(ctx: Context): string[] {
  const s = ctx.stats;
  return [
    `node_id:${ctx.nodeId}`,
    `version:${ctx.version}`,
    `uptime_seconds:${Math.floor((Date.now() - s.startedAt) / 1000)}`,
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
    `keys:${ctx.store.size}`,
    `tombstones:${ctx.store.tombstoneCount}`,
    `expiring_keys:${ctx.store.expiringCount}`,
    `memory_rss_bytes:${process.memoryUsage.rss()}`,
    ...ctx.store.statsLines(),
    ...(ctx.extraStats?.() ?? []),
  ];
}

function parser(header: 'STATS' | 'INFO') {
  return (args: Args): StatsRequest => {
    args.end();
    return { kind: 'stats', header };
  };
}

function run(req: StatsRequest, ctx: Context, out: Output): undefined {
  out.line(req.header);
  for (const line of statsLines(ctx)) out.utf8Line(line);
  out.line('END');
}

export const stats = {
  names: ['STATS'],
  access: 'read',
  requires: 'no arguments',
  parse: parser('STATS'),
  run,
} as const satisfies Command<StatsRequest>;

export const info = {
  names: ['INFO'],
  access: 'read',
  requires: 'no arguments',
  parse: parser('INFO'),
  run,
} as const satisfies Command<StatsRequest>;
