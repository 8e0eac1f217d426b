import { SyncError } from '../errors.js';
import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Command, Context } from './context.js';

export interface SyncRequest {
  readonly kind: 'sync';
  readonly host: string;
  readonly port: number;
  /** --full: walk every node of the tree, not only those whose hashes differ. */
  readonly full: boolean;
  /** --verify: answer ERROR unless the roots are equal after the exchange. */
  readonly verify: boolean;
}

export default {
  names: ['SYNC'],
  access: 'admin',
  requires: 'a host and a port (then --full, --verify)',
  parse(args: Args): SyncRequest {
    const host = args.word()?.toString('utf8');
    const portWord = args.word()?.toString('latin1');
    if (host === undefined || portWord === undefined) throw args.usage();
    const port = /^[0-9]{1,5}$/.test(portWord) ? Number(portWord) : 0;
    if (port < 1 || port > 65535) throw args.usage();
    const flags = new Set<string>();
    for (let flag = args.word(); flag !== undefined; flag = args.word()) {
      const f = flag.toString('latin1').toLowerCase();
      if (f !== '--full' && f !== '--verify') throw args.usage();
      flags.add(f);
    }
    return { kind: 'sync', host, port, full: flags.has('--full'), verify: flags.has('--verify') };
  },
  execute(req: SyncRequest, ctx: Context, out: Output): 'barrier' {
    // Answered once the exchange is over: OK, or the SyncError's message after ERROR.
    out.line('OK');
    const done = ctx.antiEntropy.syncWith(req.host, req.port, req.full).then((result) => {
      if (req.verify && !result.converged) {
        throw new SyncError(`sync with ${req.host}:${req.port}: the roots still differ after the exchange (writes kept coming)`, false);
      }
    });
    out.dependOn(done);
    return 'barrier';
  },
} as const satisfies Command<SyncRequest>;
