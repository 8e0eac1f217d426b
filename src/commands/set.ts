import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Command, Context } from './context.js';

export interface SetRequest {
  readonly kind: 'set';
  readonly key: Buffer;
  readonly value: Buffer;
}

export default {
  names: ['SET'],
  access: 'write',
  requires: 'a key and a value',
  parse(args: Args): SetRequest {
    const key = args.key();
    return { kind: 'set', key, value: args.value() };
  },
  execute(req: SetRequest, ctx: Context, out: Output): undefined {
    ctx.stats.writes++;
    // The value is a view of the request line; the store encodes it into a record of its own.
    const done = ctx.store.set(req.key, req.value);
    out.line('OK');
    out.dependOn(done);
  },
} as const satisfies Command<SetRequest>;
