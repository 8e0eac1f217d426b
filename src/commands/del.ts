import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Command, Context } from './context.js';

export interface DelRequest {
  readonly kind: 'del';
  readonly key: Buffer;
}

export default {
  names: ['DEL', 'DELETE'],
  requires: 'exactly one key',
  parse(args: Args): DelRequest {
    const key = args.key();
    args.end();
    return { kind: 'del', key };
  },
  run(req: DelRequest, ctx: Context, out: Output): undefined {
    const current = ctx.store.readValue(req.key);
    if (current.value === undefined) {
      // Nothing to delete: the answer still depends on a pending delete of this key, if any.
      out.line('NOT_FOUND');
      out.dependOn(current.after);
      return;
    }
    ctx.stats.writes++;
    const done = ctx.store.delete(req.key);
    out.line('DELETED');
    out.dependOn(done);
  },
} as const satisfies Command<DelRequest>;
