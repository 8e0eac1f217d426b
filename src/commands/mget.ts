import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Command, Context } from './context.js';

export interface MgetRequest {
  readonly kind: 'mget';
  readonly keys: readonly Buffer[];
}

export default {
  names: ['MGET'],
  access: 'read',
  requires: 'at least one key',
  parse(args: Args): MgetRequest {
    const keys = [args.key()];
    while (!args.done) keys.push(args.key());
    return { kind: 'mget', keys };
  },
  execute(req: MgetRequest, ctx: Context, out: Output): undefined {
    const values: (Buffer | undefined)[] = [];
    const waits: Promise<unknown>[] = [];
    for (const key of req.keys) {
      const { value, after } = ctx.store.readValue(key);
      // Copy: LMDB's buffer is only valid until the next read. A set has no value to show (as in Redis).
      values.push(value === undefined || value === 'set' ? undefined : Buffer.from(value));
      if (after !== null) waits.push(after);
    }
    const found = values.filter((v) => v !== undefined).length;
    ctx.stats.getHits += found;
    ctx.stats.getMisses += values.length - found;
    if (found === 0) {
      out.line('NOT_FOUND');
    } else {
      out.line(`VALUES ${found}`);
      req.keys.forEach((key, i) => {
        const v = values[i];
        if (v === undefined) out.bytesLine('', key, ' NOT_FOUND');
        else out.bytesLine('', Buffer.concat([key, SPACE, v]));
      });
    }
    if (waits.length > 0) out.dependOn(Promise.all(waits));
  },
} as const satisfies Command<MgetRequest>;

const SPACE = Buffer.from(' ');
