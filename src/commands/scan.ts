import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Command, Context } from './context.js';

export interface ScanRequest {
  readonly kind: 'scan';
  readonly prefix: Buffer;
}

export default {
  names: ['SCAN'],
  access: 'read',
  requires: 'at most one prefix',
  parse(args: Args): ScanRequest {
    const prefix = args.done ? Buffer.alloc(0) : args.key();
    args.end();
    return { kind: 'scan', prefix };
  },
  execute(req: ScanRequest, ctx: Context, out: Output): undefined {
    const keys = ctx.store.scan(req.prefix);
    out.line(`KEYS ${keys.length}`);
    for (const key of keys) out.bytesLine('', key);
    out.dependOn(ctx.store.acknowledgedAfter());
  },
} as const satisfies Command<ScanRequest>;
