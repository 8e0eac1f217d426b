import { ProtocolError } from '../errors.js';
import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Command, Context } from './context.js';

export interface ConfigReloadRequest {
  readonly kind: 'config reload';
}

/**
 * `CONFIG RELOAD` (admin), as SIGHUP: re-reads the configuration the node was started with and applies
 * what can change live (config/reload.ts). `OK applied=<n> restart=<m>`: how many changed keys took
 * effect and how many need a restart (the log names each); a configuration that does not validate
 * changes nothing: `ERROR config reload refused: <why>`.
 */
export const config = {
  names: ['CONFIG'],
  access: 'admin',
  requires: 'RELOAD',
  parse(args: Args): ConfigReloadRequest {
    const sub = args.word()?.toString('latin1').toUpperCase();
    args.end();
    if (sub !== 'RELOAD') throw args.usage();
    return { kind: 'config reload' };
  },
  execute(_req: ConfigReloadRequest, ctx: Context, out: Output): undefined {
    const result = ctx.reloadConfig?.() ?? { ok: false, reason: 'this node cannot reload its configuration' };
    if (!result.ok) throw new ProtocolError(`config reload refused: ${result.reason}`);
    out.line(`OK applied=${result.applied.length} restart=${result.restart.length}`);
  },
} as const satisfies Command<ConfigReloadRequest>;
