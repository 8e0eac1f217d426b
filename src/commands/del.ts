import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Command, Context } from './context.js';

export interface DelRequest {
  readonly kind: 'del';
  readonly key: Buffer;
}

export default {
  names: ['DEL', 'DELETE'],
  access: 'write',
  requires: 'exactly one key',
  parse(args: Args): DelRequest {
    const key = args.key();
    args.end();
    return { kind: 'del', key };
  },
  execute(req: DelRequest, ctx: Context, out: Output): undefined {
    const held = ctx.store.readValue(req.key).value !== undefined;
    // A tombstone either way (DESIGN.md section 4): a write of this key still on its way from another
    // node is older than this delete, and must not bring the key back when it arrives.
    ctx.stats.writes++;
    const done = ctx.store.delete(req.key);
    out.line(held ? 'DELETED' : 'NOT_FOUND');
    out.dependOn(done);
  },
} as const satisfies Command<DelRequest>;
