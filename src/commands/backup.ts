import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Command, Context } from './context.js';

export interface BackupRequest {
  readonly kind: 'backup';
  /** The new directory; undefined: one named by the time under `[storage] backup_path`. */
  readonly path: string | undefined;
}

/**
 * `BACKUP [path]`: a consistent copy of the node's data in a new directory, taken while writes go on
 * (backups.ts, store/backup.ts). Answered `OK <directory>` once the copy is whole and synced, `ERROR
 * ...` if it failed (the directory exists, a backup is running, the disk is full).
 */
export default {
  names: ['BACKUP'],
  access: 'admin',
  requires: 'at most a path',
  parse(args: Args): BackupRequest {
    const path = args.word()?.toString('utf8');
    args.end();
    return { kind: 'backup', path };
  },
  execute(req: BackupRequest, ctx: Context, out: Output): 'barrier' {
    const { dir, done } = ctx.backups.take(req.path);
    out.utf8Line(`OK ${dir}`);
    out.dependOn(done);
    return 'barrier';
  },
} as const satisfies Command<BackupRequest>;
