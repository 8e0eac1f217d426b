import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import { setWithExpiry } from '../store/index.js';
import type { Command, Context } from './context.js';
import { parseSeconds } from './kinds.js';

export interface SetexRequest {
  readonly kind: 'setex';
  readonly key: Buffer;
  readonly seconds: number;
  readonly value: Buffer;
}

export default {
  names: ['SETEX'],
  access: 'write',
  requires: 'a key, a number of seconds and a value',
  parse(args: Args): SetexRequest {
    const key = args.key();
    const seconds = parseSeconds(args, true);
    return { kind: 'setex', key, seconds, value: args.value() };
  },
  execute(req: SetexRequest, ctx: Context, out: Output): undefined {
    ctx.stats.writes++;
    // The expiry is an absolute time, replicated with the write: every node forgets the key at once.
    const done = setWithExpiry(ctx.store, req.key, req.value, Date.now() + req.seconds * 1000);
    out.line('OK');
    out.dependOn(done);
  },
} as const satisfies Command<SetexRequest>;
