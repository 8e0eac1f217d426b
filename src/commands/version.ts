import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Command, Context } from './context.js';

export interface VersionRequest {
  readonly kind: 'version';
}

export default {
  names: ['VERSION'],
  access: 'read',
  requires: 'no arguments',
  parse(args: Args): VersionRequest {
    args.end();
    return { kind: 'version' };
  },
  execute(_req: VersionRequest, ctx: Context, out: Output): undefined {
    out.line(`VERSION ${ctx.version}`);
  },
} as const satisfies Command<VersionRequest>;
