import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Whether this machine lets the tests mount a tmpfs (root with CAP_SYS_ADMIN; a container may not). */
export const canMount = ((): boolean => {
  const probe = mkdtempSync(join(tmpdir(), 'merkle-kv-mount-'));
  const ok = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe]).status === 0 && spawnSync('umount', [probe]).status === 0;
  rmSync(probe, { recursive: true, force: true });
  return ok;
})();

/** A small file system for a node's data directory, to fill and free. */
export class SmallDisk {
  private readonly filler: string;

  constructor(
    readonly path: string,
    megabytes: number,
  ) {
    mkdirSync(path, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${megabytes}m`, 'tmpfs', path]);
    this.filler = join(path, 'filler');
  }

  /** Takes every free byte (writes a file until ENOSPC). */
  fill(): void {
    const fd = openSync(this.filler, 'w');
    const chunk = Buffer.alloc(256 * 1024);
    try {
      for (;;) writeSync(fd, chunk);
    } catch {
      // ENOSPC: full.
    } finally {
      closeSync(fd);
    }
  }

  free(): void {
    try {
      unlinkSync(this.filler);
    } catch {
      // Not filled.
    }
  }

  /** Grows it (space returns without freeing anything). */
  grow(megabytes: number): void {
    execFileSync('mount', ['-o', `remount,size=${megabytes}m`, this.path]);
  }

  unmount(): void {
    spawnSync('umount', [this.path]);
  }
}
