import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Command, Context } from './context.js';

export interface HashRequest {
  readonly kind: 'hash';
}

export default {
  names: ['HASH'],
  access: 'read',
  // The root over keys with a prefix (DESIGN.md section 2 allows it) is not offered: segments are
  // chosen by a keyed hash of the whole key, so a prefix has no subtree of its own.
  requires: 'no arguments (HASH <prefix> is not supported)',
  parse(args: Args): HashRequest {
    args.end();
    return { kind: 'hash' };
  },
  run(_req: HashRequest, ctx: Context, out: Output): undefined {
    out.line(`HASH ${ctx.store.rootHash().toString('hex')}`);
    out.dependOn(ctx.store.acknowledgedAfter());
  },
} as const satisfies Command<HashRequest>;
