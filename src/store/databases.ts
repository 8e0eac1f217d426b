import { open, type Database, type RootDatabase, type RootDatabaseOptions } from 'lmdb';
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
  /** What a clean stop saved of the tally (snapshot.ts); emptied at every start-up. */
  readonly snapshot: Database<Buffer, Buffer>;
  /** Every record of `db`, in key order, without a copy (see scanRecords). */
  readonly scan: RecordScan;
}

/**
 * Calls `visit` with every record, in key order: `rec` is lmdb's shared buffer, valid until the next
 * record (no LMDB read may happen inside `visit`; copy what you keep), `keyOf` gives the record's key as
 * a latin1 string, made only when asked for, and its length in bytes.
 */
export type RecordScan = (visit: (rec: Buffer, keyOf: () => string, keyBytes: number) => void) => void;

/**
 * Opens the LMDB environment at `path`. `overlappingSync` is off, so an asynchronous put settles only
 * once its transaction is committed and synced: the write-ahead log's segments are deleted on that.
 * With `noSync` nothing is ever flushed to disk (a crash may leave the database torn): only for a
 * directory that is thrown away at the next start, a cache node's (cache.ts).
 */
export function openDatabases(path: string, noSync = false): Databases {
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
      noSync,
    });
  } catch (err) {
    throw new StorageError(`cannot open LMDB at ${path}: ${(err as Error).message}`, { cause: err });
  }
  return {
    root,
    db: root.openDB<Buffer, Buffer>('records', { keyEncoding: 'binary', encoding: 'binary' }),
    index: root.openDB<Buffer, Buffer>('keyhash-index', { keyEncoding: 'binary', encoding: 'binary' }),
    meta: root.openDB<number, string>('meta', { keyEncoding: 'ordered-binary', encoding: 'msgpack' }),
    snapshot: root.openDB<Buffer, Buffer>('snapshot', { keyEncoding: 'binary', encoding: 'binary' }),
    scan: scanRecords(root),
  };
}

/** The first key of all: member records' keys start with 0x00 (members.ts), and no key is empty. */
const FIRST_KEY = Buffer.from([0]);

/**
 * A second handle on `records` for whole-store scans (start-up, tally.ts). lmdb copies every key and
 * value of a `binary` range into a new Buffer, and with a million records those copies were six times
 * the cost of the rest of the scan (measured): this handle's decoder (lmdb's `encoder` option, with
 * `decode`) takes the value in lmdb's shared buffer instead, and its key decoder (`keyEncoder`) only
 * notes where the key lies in lmdb's key buffer. The range start is given: with a custom key encoder,
 * lmdb would start at its default first key (0x05), past the members.
 */
function scanRecords(root: RootDatabase<Buffer, Buffer>): RecordScan {
  let keys: Buffer = FIRST_KEY;
  let start = 0;
  let end = 0;
  // Stands for the key last read: lmdb hands it back to writeKey only if it must reposition the cursor.
  const current = Buffer.alloc(0);
  const keyOf = (): string => keys.toString('latin1', start, end);
  const options: RootDatabaseOptions = {
    keyEncoder: {
      writeKey: (key: Buffer, target: Buffer, at: number): number =>
        key === current ? at + keys.copy(target, at, start, end) : at + key.copy(target, at),
      readKey: (buf: Buffer, from: number, to: number): Buffer => {
        keys = buf;
        start = from;
        end = to;
        return current;
      },
    },
    encoder: {
      encode: (value: Buffer): Buffer => value,
      // lmdb's shared buffer, its length set to the value's; a value read from the map may come as a
      // plain Uint8Array.
      decode: (bytes: Uint8Array, size: number): Buffer =>
        Buffer.isBuffer(bytes) && bytes.length === size ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, size),
    },
  };
  const records = root.openDB<Buffer, Buffer>('records', options);
  return (visit) => {
    for (const { value } of records.getRange({ start: FIRST_KEY })) visit(value, keyOf, end - start);
  };
}
