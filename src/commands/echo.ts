import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Command } from './context.js';

export interface EchoRequest {
  readonly kind: 'echo';
  readonly message: Buffer;
}

export default {
  names: ['ECHO'],
  access: 'read',
  requires: 'a message',
  parse(args: Args): EchoRequest {
    const message = args.rest();
    if (message.length === 0) throw args.usage();
    return { kind: 'echo', message };
  },
  execute(req: EchoRequest, _ctx: unknown, out: Output): undefined {
    out.bytesLine('ECHO ', req.message);
  },
} as const satisfies Command<EchoRequest>;
