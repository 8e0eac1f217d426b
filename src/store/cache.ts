import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirectoryInUseError, StorageError } from '../errors.js';
import { lockDataDirectory } from './lock.js';

/*
 * A cache node's data directory (`[storage] persistence_enabled = false`, the reference's in-memory
 * store): LMDB and the write-ahead log as on any node, but in a directory under the OS temp dir, named
 * after the node id, that every start makes fresh and a clean stop removes. Nothing in it is synced
 * (log mode "none", LMDB noSync), so a crash may leave it torn: it is never read again, since the next
 * start wipes it, and the node refills from its peers by anti-entropy like any empty node.
 */

/** Room for the prefix and a hash within a file name's 255 bytes. */
const MAX_NAME = 200;

/** Where node `nodeId` keeps its cache: the same path at every start, so a crash's leftover is found and wiped. */
export function cacheDirectory(nodeId: string): string {
  // A node id may hold '/' or be '..': encoded, it is one harmless name; a long one is cut and told apart by a hash.
  let name = encodeURIComponent(nodeId);
  if (name.length > MAX_NAME) name = `${name.slice(0, MAX_NAME - 17)}-${createHash('sha256').update(nodeId).digest('hex').slice(0, 16)}`;
  return join(tmpdir(), `merkle-kv-cache-${name}`);
}

/**
 * Makes node `nodeId`'s cache directory fresh and returns its path: whatever a crashed run left there is
 * deleted. Refused (DirectoryInUseError) while a running node with the same node id holds it, and
 * (StorageError) if the path is anything but a directory of this user's.
 */
export function freshCacheDirectory(nodeId: string): string {
  const dir = cacheDirectory(nodeId);
  const found = lstatSync(dir, { throwIfNoEntry: false });
  if (found !== undefined) {
    // In a temp dir that every user shares, a link or someone else's directory planted at this name must
    // not have us delete what it points to.
    const uid = process.getuid?.();
    if (!found.isDirectory() || (uid !== undefined && found.uid !== uid)) {
      throw new StorageError(`cache directory ${dir} exists and is not a directory of this user's: remove it, or change node_id`);
    }
    try {
      // Taken and released at once: it only tells a leftover from a directory a running node holds.
      lockDataDirectory(dir)();
    } catch (err) {
      if (err instanceof DirectoryInUseError) {
        throw new DirectoryInUseError(`cache directory ${dir} is in use by another running node with node_id ${nodeId}; node ids must be unique`);
      }
      throw err;
    }
    rmSync(dir, { recursive: true, force: true });
  }
  // Not recursive: a directory made by someone else meanwhile is an error, not ours to use.
  mkdirSync(dir, { mode: 0o700 });
  return dir;
}

/** Deletes a cache directory, once the store in it is closed (a clean stop). */
export function removeCacheDirectory(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
