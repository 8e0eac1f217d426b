import { randomBytes, createHash } from 'node:crypto';
import { existsSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { Database } from 'lmdb';
import { MAX_NODE_ID_BYTES } from '../rules.js';
import { MANIFEST } from './backup.js';
import type { Databases } from './databases.js';

/*
 * The name this store's counter totals go under (counter.ts: per writer, the totals it added and
 * subtracted, merged by maximum). A writer's totals must only grow; a store that lost some of its own
 * (started empty, as a cache node does and a wiped node does, or after a crash that may have lost the
 * last acknowledged writes to an OS crash, or restored from a backup) would begin them again below what
 * its peers hold, and its next increments would vanish in the merge. So such a start takes a new name,
 * `<node id>~<8 hex digits>`, whose totals start at 0 beside the old ones, which stay as they are on every
 * replica. A clean restart keeps the name. A store of an older release keeps the node id itself.
 */

const KEY = 'counter_writer';
/** What a backup's manifest is renamed to once a node starts on it: the next start is not a restore. */
const RESTORED = 'restored-from-backup.json';

export interface WriterStart {
  readonly dir: string;
  readonly nodeId: string;
  /** Log segments found at start-up: a crash, not a clean stop. */
  readonly logSegments: number;
}

/** This store's counter writer name (see above), decided and saved at open. */
export function counterWriter(dbs: Pick<Databases, 'root' | 'db' | 'meta'>, s: WriterStart): string {
  // The directory's small facts hold numbers mostly (its type says so); this one is a string.
  const meta = dbs.meta as unknown as Database<string, string>;
  const saved = meta.get(KEY);
  const manifest = join(s.dir, MANIFEST);
  const restored = existsSync(manifest);
  const empty = (dbs.db.getStats() as { entryCount: number }).entryCount === 0;
  if (!restored && !empty && s.logSegments === 0) {
    if (saved !== undefined) return saved;
    // Written by a release that named totals by node id: they go on under it.
    dbs.root.transactionSync(() => void meta.put(KEY, s.nodeId));
    return s.nodeId;
  }
  const writer = `${prefixOf(s.nodeId)}~${randomBytes(4).toString('hex')}`;
  dbs.root.transactionSync(() => void meta.put(KEY, writer));
  if (restored) renameSync(manifest, join(s.dir, RESTORED));
  return writer;
}

/** The node id, or a digest of it when the suffix would take the name past a node id's length. */
function prefixOf(nodeId: string): string {
  return Buffer.byteLength(nodeId, 'utf8') + 9 <= MAX_NODE_ID_BYTES ? nodeId : createHash('sha256').update(nodeId).digest('hex');
}
