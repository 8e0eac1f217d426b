import type { Logger } from 'pino';
import type { TreeHasher } from '../merkle/hash.js';
import type { Databases } from './databases.js';
import { decodeFormat1, encodeRecord, indexKey, RECORD_FORMAT } from './record.js';

export interface UpgradeTarget extends Databases {
  readonly hasher: TreeHasher;
  readonly logger: Logger;
}

/** The newest record format the directory's records are in (absent before format 2; 2 and 3 are read alike). */
const RECORD_FORMAT_KEY = 'record_format';

/**
 * Brings a data directory written by an earlier release up to date, in one transaction: format-1
 * records (no hashes) are rewritten in the current format, and the key-hash index is rebuilt if it does not
 * hold exactly one entry per record.
 */
export function upgradeDataDirectory(t: UpgradeTarget): void {
  const indexed = (t.index.getStats() as { entryCount: number }).entryCount;
  const records = (t.db.getStats() as { entryCount: number }).entryCount;
  // Only directories not yet marked as holding format 2 or later need the scan for format-1 records;
  // format 2 records are read as they are (record.ts).
  const current = (t.meta.get(RECORD_FORMAT_KEY) ?? 0) >= 2;
  if (current && indexed === records) return;
  const old: [Buffer, Buffer][] = [];
  if (!current) {
    for (const { key, value } of t.db.getRange({})) {
      if (value[0] === 1) old.push([Buffer.from(key), Buffer.from(value.subarray(0, value.length))]);
    }
  }
  t.root.transactionSync(() => {
    for (const [key, buf] of old) {
      const r = decodeFormat1(buf);
      const version = { wall: r.wall, counter: r.counter, node: r.node };
      const item = t.hasher.item(key, version, r.flags, r.body);
      const keyHash = t.hasher.keyHash(key);
      void t.db.put(key, encodeRecord({ ...r, item, keyHash }));
    }
    const stale = [...t.index.getKeys({})].map((k) => Buffer.from(k));
    for (const k of stale) void t.index.remove(k);
    for (const { key, value } of t.db.getRange({})) void t.index.put(indexKey(value, key), EMPTY);
    void t.meta.put(RECORD_FORMAT_KEY, RECORD_FORMAT);
  });
  if (records > 0) t.logger.info({ upgraded: old.length, indexed: records }, 'data directory upgraded');
}

const EMPTY = Buffer.alloc(0);
