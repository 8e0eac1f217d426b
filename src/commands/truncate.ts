import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import { truncate } from '../store/index.js';
import type { Command, Context } from './context.js';

export interface TruncateRequest {
  readonly kind: 'truncate';
}

export default {
  names: ['TRUNCATE', 'FLUSHDB'],
  access: 'admin',
  requires: 'no arguments',
  parse(args: Args): TruncateRequest {
    args.end();
    return { kind: 'truncate' };
  },
  execute(_req: TruncateRequest, ctx: Context, out: Output): undefined {
    // Tombstones, not a cleared database: the deletes must replicate and win over older writes elsewhere.
    const done = truncate(ctx.store);
    out.line('OK');
    out.dependOn(done);
  },
} as const satisfies Command<TruncateRequest>;
