import { linkSync, mkdirSync, readFileSync, realpathSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DirectoryInUseError, StorageError } from '../errors.js';

/**
 * The data directory's owner, so that a second node started on the same `storage.path` is refused at
 * start-up instead of writing beside the first (LMDB itself lets several processes open one database,
 * and two write-ahead logs in one directory would undo each other's writes).
 *
 * Node has no flock(2), so the lock is a file, `merkle-kv.lock`, naming the owner: its pid, the start
 * time of that process (so a new process that was given the same pid is not taken for the owner) and
 * the directory's real path (so a copy of the directory, a backup, is not locked). It is created
 * whole or not at all (written aside, then linked into place). A lock whose owner is gone (a crash,
 * `kill -9`) is taken over at once.
 */
const LOCK_FILE = 'merkle-kv.lock';

interface Owner {
  readonly pid: number;
  /** The process's start time as /proc gives it (clock ticks since boot); '' where there is no /proc. */
  readonly started: string;
  readonly dir: string;
}

/** Directories this process holds, by real path. */
const held = new Set<string>();

/** Takes the lock of `dir` (creating the directory); returns its release. Throws DirectoryInUseError if a running node holds it. */
export function lockDataDirectory(dir: string): () => void {
  mkdirSync(dir, { recursive: true });
  const real = realpathSync(dir);
  const path = join(real, LOCK_FILE);
  const me: Owner = { pid: process.pid, started: startTimeOf(process.pid), dir: real };
  for (let attempt = 0; ; attempt++) {
    if (tryCreate(path, me)) break;
    const owner = readOwner(path);
    if (owner !== undefined && isRunning(owner, real)) {
      const who = owner.pid === process.pid ? 'this process' : `pid ${owner.pid}`;
      throw new DirectoryInUseError(`data directory ${dir} is in use by another running node (${who}); stop it, or give this node its own storage.path`);
    }
    if (attempt === 2) throw new StorageError(`cannot take the lock ${path}: it keeps changing`);
    // The owner is gone: the lock is stale.
    try {
      unlinkSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new StorageError(`cannot remove the stale lock ${path}`, { cause: err });
    }
  }
  held.add(real);
  return () => {
    held.delete(real);
    const owner = readOwner(path);
    if (owner?.pid === me.pid && owner.started === me.started) {
      try {
        unlinkSync(path);
      } catch {
        // Already gone: nothing to release.
      }
    }
  };
}

/** Creates the lock file naming `me`, whole; false if there is one already. */
function tryCreate(path: string, me: Owner): boolean {
  const aside = `${path}.${process.pid}.${Date.now()}`;
  writeFileSync(aside, `${JSON.stringify(me)}\n`);
  try {
    linkSync(aside, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new StorageError(`cannot create the lock ${path}`, { cause: err });
  } finally {
    unlinkSync(aside);
  }
}

function readOwner(path: string): Owner | undefined {
  try {
    const o = JSON.parse(readFileSync(path, 'utf8')) as Partial<Owner>;
    if (typeof o.pid !== 'number' || typeof o.started !== 'string' || typeof o.dir !== 'string') return undefined;
    return { pid: o.pid, started: o.started, dir: o.dir };
  } catch {
    return undefined;
  }
}

/** Whether the lock's owner is a live process that holds this very directory. */
function isRunning(owner: Owner, real: string): boolean {
  if (owner.dir !== real) return false;
  if (owner.pid === process.pid) return held.has(real);
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const now = procStat(owner.pid);
  // A zombie (killed, not yet reaped by its parent: a container whose init does not reap) is gone.
  if (now !== undefined && (now.state === 'Z' || now.state === 'X')) return false;
  return owner.started === '' || now?.started === owner.started;
}

/** Fields 3 (state) and 22 (start time) of /proc/<pid>/stat, after the command name, which may hold spaces. */
function procStat(pid: number): { state: string; started: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0] ?? '', started: fields[19] ?? '' };
  } catch {
    return undefined;
  }
}

/** The process's start time; '' without /proc. */
function startTimeOf(pid: number): string {
  return procStat(pid)?.started ?? '';
}
