import { rmSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Databases } from './databases.js';
import { StorageError } from '../errors.js';
import { compareVersion } from '../hlc.js';
import { indexKey, isKeyedRecord, isSimple, keyedKey, keyedRecord, recordVersionOf } from './record.js';
import { listSegments, readSegment } from './wal.js';

export interface ReplayTarget extends Omit<Databases, 'meta'> {
  readonly dir: string;
  readonly logger: Logger;
  /** The largest entry body a segment may hold (a bigger length is damage, not a write). */
  readonly maxEntryBytes: number;
}

/**
 * Start-up recovery: applies every write of the log's segments to LMDB, oldest first, in one synced
 * transaction, then deletes the segments. Each write goes through last-writer-wins on its epoch, so
 * writes LMDB already holds change nothing and a replay twice equals a replay once (a crash during
 * recovery is safe). A counter (or a record with an expiry) keeps its epoch while it changes: each
 * logged state was merged from everything before it, so of one epoch the later entry is put. Returns the number to give the next segment, how many segments there were (none after a clean stop), and what was replayed.
 */
export function replayLog(t: ReplayTarget): { nextSeq: number; segments: number; entries: number; applied: number } {
  const segments = listSegments(t.dir);
  if (segments.length === 0) return { nextSeq: 0, segments: 0, entries: 0, applied: 0 };
  const bodies: Buffer[] = [];
  for (const seg of segments) {
    const found = readSegment(seg.path, t.maxEntryBytes, (offset, why) =>
      t.logger.warn({ file: seg.path, offset, why }, 'write-ahead log ends in a torn entry (an interrupted write, never acknowledged); dropped'),
    );
    for (const body of found) {
      if (!isKeyedRecord(body)) throw new StorageError(`write-ahead log ${seg.path} holds an entry that is not a record`);
      bodies.push(body);
    }
  }
  let applied = 0;
  t.root.transactionSync(() => {
    for (const body of bodies) {
      const key = keyedKey(body);
      const rec = keyedRecord(body);
      const current = t.db.getBinary(key);
      if (current === undefined) void t.index.put(indexKey(rec, key), EMPTY);
      else if (skip(rec, current)) continue;
      void t.db.put(key, rec);
      applied++;
    }
  });
  for (const seg of segments) rmSync(seg.path, { force: true });
  const last = segments[segments.length - 1]?.seq ?? -1;
  t.logger.info({ segments: segments.length, entries: bodies.length, applied }, 'write-ahead log replayed');
  return { nextSeq: last + 1, segments: segments.length, entries: bodies.length, applied };
}

/** Whether the logged record `rec` is not newer than LMDB's `current` (see above). */
function skip(rec: Buffer, current: Buffer): boolean {
  const order = compareVersion(recordVersionOf(rec), recordVersionOf(current));
  return order < 0 || (order === 0 && isSimple(rec) && isSimple(current));
}

const EMPTY = Buffer.alloc(0);
