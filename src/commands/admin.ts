import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Command, Context } from './context.js';

/*
 * The MerkleKV reference project's admin and monitoring commands (DESIGN.md section 2): MEMORY,
 * CLIENT LIST, REPLICATE.
 */

export interface MemoryRequest {
  readonly kind: 'memory';
}

export interface ClientListRequest {
  readonly kind: 'client list';
}

export interface ReplicateRequest {
  readonly kind: 'replicate';
  readonly action: 'enable' | 'disable' | 'status';
}

/** `MEMORY <bytes>`: the process's resident memory, as the reference reports it. */
export const memory = {
  names: ['MEMORY'],
  access: 'read',
  requires: 'no arguments',
  parse(args: Args): MemoryRequest {
    args.end();
    return { kind: 'memory' };
  },
  execute(_req: MemoryRequest, _ctx: Context, out: Output): undefined {
    out.line(`MEMORY ${process.memoryUsage.rss()}`);
  },
} as const satisfies Command<MemoryRequest>;

/** `CLIENT LIST`: one `id= addr= age= idle= cmd=` line per connection (as Redis), then END. */
export const client = {
  names: ['CLIENT'],
  access: 'admin',
  requires: 'LIST',
  parse(args: Args): ClientListRequest {
    const sub = args.word()?.toString('latin1').toUpperCase();
    args.end();
    if (sub !== 'LIST') throw args.usage();
    return { kind: 'client list' };
  },
  execute(_req: ClientListRequest, ctx: Context, out: Output): undefined {
    const now = Date.now();
    for (const c of ctx.clients()) {
      const age = Math.floor((now - c.openedAt) / 1000);
      const idle = Math.floor((now - c.lastActivity) / 1000);
      out.utf8Line(`id=${c.id} addr=${c.address} age=${age} idle=${idle} cmd=${c.lastCommand.toLowerCase()}`);
    }
    out.line('END');
  },
} as const satisfies Command<ClientListRequest>;

/**
 * `REPLICATE enable|disable|status`: switches publishing and applying at run time. `status` answers
 * `REPLICATION enabled|disabled` (and why, when this node has no replication configured).
 */
export const replicate = {
  names: ['REPLICATE'],
  access: 'admin',
  requires: 'enable, disable or status',
  parse(args: Args): ReplicateRequest {
    const action = args.word()?.toString('latin1').toLowerCase();
    args.end();
    if (action !== 'enable' && action !== 'disable' && action !== 'status') throw args.usage();
    return { kind: 'replicate', action };
  },
  execute(req: ReplicateRequest, ctx: Context, out: Output): undefined {
    const r = ctx.replication;
    if (req.action === 'status') {
      out.line(r === undefined ? 'REPLICATION disabled (not configured: [mqtt] enabled = false)' : `REPLICATION ${r.enabled ? 'enabled' : 'disabled'}`);
      return;
    }
    if (r === undefined) {
      if (req.action === 'disable') out.line('OK');
      else out.error('replication is not configured on this node ([mqtt] enabled = false)');
      return;
    }
    r.setEnabled(req.action === 'enable');
    out.line('OK');
  },
} as const satisfies Command<ReplicateRequest>;
