import type { Database } from 'lmdb';
import { isMemberKey } from './members.js';
import type { PendingWrite } from './overlay.js';
import { isAbsent } from './record.js';
import { isSetHeader } from './sets.js';

export interface ScanSource {
  readonly db: Database<Buffer, Buffer>;
  /** The pending writes, which override LMDB's records. */
  readonly pending: IterableIterator<PendingWrite>;
  /** The members of the set whose header (key `k` in latin1) is `rec`. */
  readonly cardinality: (k: string, rec: Buffer) => number;
}

/** Client keys start at 0x21 (rules.ts): member keys (0x00...) sort before them. */
const FIRST_CLIENT_KEY = Buffer.from([0x21]);

/** SCAN: the live keys starting with `prefix`, in byte order, pending writes included. */
export function scanKeys(src: ScanSource, prefix: Buffer): Buffer[] {
  const found = new Map<string, Buffer>();
  const now = Date.now();
  // A key reads as absent if its record is a tombstone, expired, or a set without members.
  const absent = (k: string, rec: Buffer): boolean => isAbsent(rec, now) || (isSetHeader(rec) && src.cardinality(k, rec) === 0);
  for (const { key, value } of src.db.getRange({ start: prefix.length === 0 ? FIRST_CLIENT_KEY : prefix })) {
    if (!startsWith(key, prefix)) break;
    const k = key.toString('latin1');
    if (!absent(k, value)) found.set(k, Buffer.from(key));
  }
  for (const p of src.pending) {
    if (!startsWith(p.key, prefix) || isMemberKey(p.key)) continue;
    if (absent(p.k, p.rec)) found.delete(p.k);
    else found.set(p.k, p.key);
  }
  return [...found.values()].sort((a, b) => Buffer.compare(a, b));
}

function startsWith(key: Buffer, prefix: Buffer): boolean {
  return key.length >= prefix.length && key.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
}

/**
 * Visits LMDB's records from `from` (inclusive) in key order until `visit` returns false (anti-entropy's
 * copy of a whole store, which follows up with a comparison: writes pending here are left to it).
 */
export function visitKeyOrder(db: Database<Buffer, Buffer>, from: Buffer, visit: (key: Buffer, rec: Buffer) => boolean): void {
  for (const { key, value } of db.getRange({ start: from })) if (!visit(key, value)) return;
}
