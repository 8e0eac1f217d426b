import { ProtocolError } from '../errors.js';
import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Command, Context } from './context.js';
import { WRONG_KIND } from './kinds.js';

export interface GetRequest {
  readonly kind: 'get';
  readonly key: Buffer;
}

export default {
  names: ['GET'],
  access: 'read',
  requires: 'exactly one key',
  parse(args: Args): GetRequest {
    const key = args.key();
    args.end();
    return { kind: 'get', key };
  },
  execute(req: GetRequest, ctx: Context, out: Output): undefined {
    const { value, after } = ctx.store.readValue(req.key);
    if (value === 'set') throw new ProtocolError(WRONG_KIND);
    if (value === undefined) {
      ctx.stats.getMisses++;
      out.line('NOT_FOUND');
    } else {
      ctx.stats.getHits++;
      out.bytesLine('VALUE ', value);
    }
    out.dependOn(after);
  },
} as const satisfies Command<GetRequest>;
