import { open, type Database, type RootDatabase } from 'lmdb';
import { StorageError } from '../errors.js';

/** The LMDB environment of a data directory and its databases. */
export interface Databases {
  readonly root: RootDatabase<Buffer, Buffer>;
  /** key -> encoded record (record.ts), tombstones included. */
  readonly db: Database<Buffer, Buffer>;
  /** (key hash, key) -> empty: the keys of any key-hash range in one scan (keyhash.ts). */
  readonly index: Database<Buffer, Buffer>;
  /** Small facts about the directory: record format, purge horizon. */
  readonly meta: Database<number, string>;
}

/**
 * Opens the LMDB environment at `path`. `overlappingSync` is off, so an asynchronous put settles only
 * once its transaction is committed and synced: the write-ahead log's segments are deleted on that.
 */
export function openDatabases(path: string): Databases {
  let root: RootDatabase<Buffer, Buffer>;
  try {
    root = open<Buffer, Buffer>({
      path,
      // Always a directory (data.mdb, lock.mdb beside the log): lmdb would take a path with a dot in
      // its last part, such as ./data/node.1, for a file name.
      noSubdir: false,
      keyEncoding: 'binary',
      encoding: 'binary',
      compression: false,
      overlappingSync: false,
      noMemInit: true,
    });
  } catch (err) {
    throw new StorageError(`cannot open LMDB at ${path}: ${(err as Error).message}`, { cause: err });
  }
  return {
    root,
    db: root.openDB<Buffer, Buffer>('records', { keyEncoding: 'binary', encoding: 'binary' }),
    index: root.openDB<Buffer, Buffer>('keyhash-index', { keyEncoding: 'binary', encoding: 'binary' }),
    meta: root.openDB<number, string>('meta', { keyEncoding: 'ordered-binary', encoding: 'msgpack' }),
  };
}
