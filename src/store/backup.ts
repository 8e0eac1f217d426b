import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { copyFile, open, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import type { RootDatabase } from 'lmdb';
import { StorageError } from '../errors.js';
import { listSegments } from './wal.js';

/*
 * BACKUP (issue #26): a consistent copy of a running store in a new directory, which a node can start
 * on as its data directory. Writes go on meanwhile.
 *
 * Every write acknowledged before the backup began is either in LMDB already or in a log segment that
 * exists now (a segment is deleted only once LMDB holds its writes, committed and synced). So: first
 * the segments present now are copied; then LMDB's own copy of a read transaction begun after that
 * (mdb_env_copy2 on a worker thread: the event loop keeps serving). Not compacted: a compacted copy of
 * a million records, taken while writes went on, failed its first write transaction once opened
 * (MDB_BAD_TXN, then a crash; lmdb-js issue #198 reports the same); the plain copy did not. A segment deleted
 * between the listing and its copy had its writes committed before LMDB's copy began. The copy may hold
 * writes made after the backup began too; a node started on it replays the copied segments over it as
 * after a crash (replay.ts: last writer wins, so an older logged write does not undo a newer one), and
 * it holds no tally snapshot that could be trusted (start-up deleted it), so the tree is rebuilt from
 * the records. A backup is written under a temporary name and renamed once whole: a directory with the
 * final name is always complete.
 */

export interface BackupSource {
  readonly root: RootDatabase<Buffer, Buffer>;
  /** The data directory. */
  readonly path: string;
  /** Resolves once every write made so far is in the log file. */
  readonly flushed: () => Promise<void>;
}

export interface BackupResult {
  /** The backup's directory, absolute. */
  readonly dir: string;
  /** Bytes written: LMDB's copy and the log segments. */
  readonly bytes: number;
  /** Log segments copied (writes LMDB did not hold yet when the backup began). */
  readonly segments: number;
  readonly ms: number;
}

/** Written beside the copy: what it is, and when it was taken. */
export const MANIFEST = 'backup.json';

/** Copies the store of `src` into the new directory `target`; refused if `target` exists or lies in the data directory. */
export async function takeBackup(src: BackupSource, target: string): Promise<BackupResult> {
  const started = Date.now();
  const dir = resolve(target);
  const data = resolve(src.path);
  const inside = relative(data, dir);
  if (inside === '' || (!inside.startsWith('..') && !inside.startsWith('/'))) throw new StorageError(`backup directory ${dir} is inside the data directory`);
  if (existsSync(dir)) throw new StorageError(`backup directory ${dir} already exists`);
  const partial = join(dirname(dir), `.${basename(dir)}.partial-${process.pid}`);
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true });
  try {
    await src.flushed();
    let bytes = 0;
    let segments = 0;
    for (const seg of listSegments(data)) {
      const to = join(partial, basename(seg.path));
      try {
        await copyFile(seg.path, to);
      } catch (err) {
        // Deleted since it was listed: LMDB held its writes before its copy begins.
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      await fsyncPath(to);
      bytes += statSync(to).size;
      segments++;
    }
    await src.root.backup(partial, false);
    await fsyncPath(join(partial, 'data.mdb'));
    bytes += statSync(join(partial, 'data.mdb')).size;
    // lmdb makes a lock file beside a copy it opens; a backup has no reader yet.
    rmSync(join(partial, 'lock.mdb'), { force: true });
    const manifest = { format: 1, source: data, startedAt: new Date(started).toISOString(), finishedAt: new Date().toISOString(), segments };
    await writeFile(join(partial, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    await fsyncPath(join(partial, MANIFEST));
    await fsyncPath(partial);
    renameSync(partial, dir);
    await fsyncPath(dirname(dir));
    return { dir, bytes, segments, ms: Date.now() - started };
  } catch (err) {
    rmSync(partial, { recursive: true, force: true });
    throw err instanceof StorageError ? err : new StorageError(`backup to ${dir} failed: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The backups in `parent` that takeBackup made (a manifest beside the copy), oldest first by name;
 * scheduled backups are named by the time they began, so that is their age.
 */
export function listBackups(parent: string): string[] {
  if (!existsSync(parent)) return [];
  return readdirSync(parent)
    .filter((name) => !name.startsWith('.') && existsSync(join(parent, name, MANIFEST)))
    .sort()
    .map((name) => join(parent, name));
}

/** fsync of a file, or of a directory (its entries), on libuv's threads: a large copy takes a while to reach the disk. */
async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
