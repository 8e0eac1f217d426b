import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Command } from './context.js';

export interface PingRequest {
  readonly kind: 'ping';
  /** Empty for a bare PING. */
  readonly message: Buffer;
}

export default {
  names: ['PING'],
  access: 'public',
  requires: 'at most one message',
  parse(args: Args): PingRequest {
    return { kind: 'ping', message: args.rest() };
  },
  execute(req: PingRequest, _ctx: unknown, out: Output): undefined {
    if (req.message.length === 0) out.line('PONG');
    else out.bytesLine('PONG ', req.message);
  },
} as const satisfies Command<PingRequest>;
