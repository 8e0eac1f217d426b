import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Command, Context } from './context.js';

export interface ExistsRequest {
  readonly kind: 'exists';
  readonly keys: readonly Buffer[];
}

export default {
  names: ['EXISTS'],
  access: 'read',
  requires: 'at least one key',
  parse(args: Args): ExistsRequest {
    const keys = [args.key()];
    while (!args.done) keys.push(args.key());
    return { kind: 'exists', keys };
  },
  execute(req: ExistsRequest, ctx: Context, out: Output): undefined {
    let count = 0;
    const waits: Promise<unknown>[] = [];
    for (const key of req.keys) {
      const { value, after } = ctx.store.readValue(key);
      if (value !== undefined) count++;
      if (after !== null) waits.push(after);
    }
    out.line(`EXISTS ${count}`);
    if (waits.length > 0) out.dependOn(Promise.all(waits));
  },
} as const satisfies Command<ExistsRequest>;
