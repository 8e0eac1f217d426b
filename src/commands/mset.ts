import type { Args } from '../protocol/args.js';
import { checkValue } from '../rules.js';
import type { Output } from '../protocol/output.js';
import { setsGrowth, type Ack } from '../store/index.js';
import type { Command, Context } from './context.js';

export interface MsetRequest {
  readonly kind: 'mset';
  readonly pairs: readonly (readonly [Buffer, Buffer])[];
}

export default {
  names: ['MSET'],
  access: 'write',
  requires: 'an even number of arguments (key-value pairs)',
  parse(args: Args): MsetRequest {
    const pairs: [Buffer, Buffer][] = [];
    do {
      const key = args.key();
      const value = args.word();
      if (value === undefined) throw args.usage();
      pairs.push([key, checkValue(value, args.limits)]);
    } while (!args.done);
    return { kind: 'mset', pairs };
  },
  execute(req: MsetRequest, ctx: Context, out: Output): undefined {
    // Refused whole, before any write, if the pairs would take the data past memory_limit_mb.
    if (ctx.capacity.limitBytes > 0) ctx.capacity.admit(setsGrowth(ctx.store, req.pairs));
    ctx.stats.writes += req.pairs.length;
    // The writes of one batch share one log write (and, with "always", one fdatasync): the last
    // write's wait covers them all.
    let after: Ack = null;
    for (const [key, value] of req.pairs) after = ctx.store.set(key, value) ?? after;
    out.line('OK');
    out.dependOn(after);
  },
} as const satisfies Command<MsetRequest>;
