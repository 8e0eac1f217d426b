import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import { timeToLive } from '../store/index.js';
import type { Command, Context } from './context.js';

export interface TtlRequest {
  readonly kind: 'ttl';
  readonly key: Buffer;
}

export default {
  names: ['TTL'],
  access: 'read',
  requires: 'exactly one key',
  parse(args: Args): TtlRequest {
    const key = args.key();
    args.end();
    return { kind: 'ttl', key };
  },
  execute(req: TtlRequest, ctx: Context, out: Output): undefined {
    const { value: ms, after } = timeToLive(ctx.store, req.key);
    // Rounded to the nearest second, as Redis does; a key about to expire shows 0, never -1.
    if (ms === undefined) out.line('NOT_FOUND');
    else out.line(`TTL ${ms === null ? -1 : Math.max(0, Math.round(ms / 1000))}`);
    out.dependOn(after);
  },
} as const satisfies Command<TtlRequest>;
