import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Command, Context } from './context.js';

export interface DbsizeRequest {
  readonly kind: 'dbsize';
}

export default {
  names: ['DBSIZE'],
  access: 'read',
  requires: 'no arguments',
  parse(args: Args): DbsizeRequest {
    args.end();
    return { kind: 'dbsize' };
  },
  execute(_req: DbsizeRequest, ctx: Context, out: Output): undefined {
    out.line(`DBSIZE ${ctx.store.size}`);
    out.dependOn(ctx.store.acknowledgedAfter());
  },
} as const satisfies Command<DbsizeRequest>;
