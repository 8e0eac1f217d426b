import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Command, Context } from './context.js';

export interface SyncRequest {
  readonly kind: 'sync';
  readonly host: string;
  readonly port: number;
}

export default {
  names: ['SYNC'],
  access: 'admin',
  requires: 'a host and a port',
  parse(args: Args): SyncRequest {
    const host = args.word()?.toString('utf8');
    const portWord = args.word()?.toString('latin1');
    args.end();
    if (host === undefined || portWord === undefined) throw args.usage();
    const port = /^[0-9]{1,5}$/.test(portWord) ? Number(portWord) : 0;
    if (port < 1 || port > 65535) throw args.usage();
    return { kind: 'sync', host, port };
  },
  run(req: SyncRequest, ctx: Context, out: Output): 'barrier' {
    // Answered once the exchange is over: OK, or the SyncError's message after ERROR.
    out.line('OK');
    out.dependOn(ctx.antiEntropy.syncWith(req.host, req.port));
    return 'barrier';
  },
} as const satisfies Command<SyncRequest>;
