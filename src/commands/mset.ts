import { checkValue, type Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Command, Context } from './context.js';

export interface MsetRequest {
  readonly kind: 'mset';
  readonly pairs: readonly (readonly [Buffer, Buffer])[];
}

export default {
  names: ['MSET'],
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
  run(req: MsetRequest, ctx: Context, out: Output): undefined {
    ctx.stats.writes += req.pairs.length;
    // All puts of one turn share one LMDB transaction, so they commit together.
    const done = Promise.all(req.pairs.map(([key, value]) => ctx.store.set(key, value)));
    out.line('OK');
    out.dependOn(done);
  },
} as const satisfies Command<MsetRequest>;
