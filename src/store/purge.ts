import type { Logger } from 'pino';
import type { Databases } from './databases.js';
import { decodeMember, isPresent, newestMemberChange } from './members.js';
import { indexKey, isTombstone, KIND, payloadOffset, recordExpiry, recordKind, recordVersion, recordVersionOf } from './record.js';
import { isDead } from './sets.js';

export interface PurgeOptions extends Databases {
  readonly logger: Logger;
  readonly graceSeconds: number;
  /** Whether a write to this key (latin1) is pending: its stored tombstone is about to be replaced. */
  readonly isPending: (k: string) => boolean;
  /** The record of the set a member key (latin1) belongs to, pending writes first. */
  readonly headerOf: (k: string) => Buffer | undefined;
  /** Told of each record removed (key in latin1), inside the transaction that removes it (tree and counts). */
  readonly onRemoved: (k: string, rec: Buffer) => void;
}

const PURGED_BEFORE = 'purged_before';
const PURGE_CHUNK = 1000;

/**
 * Removes tombstones older than the grace period, never earlier (DESIGN.md section 4), on a timer; and
 * records that expired longer than the grace period ago, which every node reads as absent (an expired
 * record is a tombstone whose time is its expiry); and set members (members.ts) whose adds were all
 * removed longer than the grace period ago, that belong to an older epoch than their set's header, or
 * whose set has been gone longer than the grace period.
 * The check runs again inside the write transaction, so a key rewritten meanwhile is left alone.
 *
 * It remembers how far it has purged (`purgedBefore`, persisted): a remote write older than that for a
 * key this node does not hold may be one whose delete was forgotten, and the store refuses it.
 */
export class TombstonePurger {
  private horizon: number;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly opts: PurgeOptions) {
    this.horizon = opts.meta.get(PURGED_BEFORE) ?? 0;
  }

  /** Tombstones written before this time (ms) may have been purged. */
  get purgedBefore(): number {
    return this.horizon;
  }

  start(): void {
    const every = Math.min(Math.max((this.opts.graceSeconds * 1000) / 10, 1000), 600_000);
    this.timer = setTimeout(() => {
      this.purge(Date.now() - this.opts.graceSeconds * 1000)
        .catch((err: unknown) => this.opts.logger.error({ err }, 'tombstone purge failed'))
        .finally(() => {
          if (!this.stopped) this.start();
        });
    }, every);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Removes tombstones written before `olderThan` (ms since the epoch). Returns how many. */
  async purge(olderThan: number): Promise<number> {
    const { db, index, meta } = this.opts;
    const expired: [Buffer, Buffer][] = [];
    for (const { key, value } of db.getRange({})) {
      const k = key.toString('latin1');
      if (this.purgeable(k, value, olderThan) && !this.opts.isPending(k)) {
        expired.push([Buffer.from(key), Buffer.from(value.subarray(0, value.length))]);
      }
    }
    let removed = 0;
    // Synchronous transactions, a chunk at a time: nothing can read or write between a tombstone's
    // check and its removal (a write racing an asynchronous purge could find the tombstone, then lose
    // its index entry to the purge), and the event loop still breathes between chunks.
    for (let i = 0; i < expired.length; i += PURGE_CHUNK) {
      if (i > 0) await new Promise((resolve) => setImmediate(resolve));
      if (this.stopped) break;
      this.opts.root.transactionSync(() => {
        for (const [key, rec] of expired.slice(i, i + PURGE_CHUNK)) {
          const now = db.getBinary(key);
          if (now !== undefined && now.equals(rec) && !this.opts.isPending(key.toString('latin1'))) {
            void db.remove(key);
            void index.remove(indexKey(rec, key));
            this.opts.onRemoved(key.toString('latin1'), rec);
            removed++;
          }
        }
        if (removed > 0 && olderThan > this.horizon) {
          this.horizon = olderThan;
          void meta.put(PURGED_BEFORE, olderThan);
        }
      });
    }
    if (removed > 0) this.opts.logger.info({ removed }, 'purged expired tombstones');
    return removed;
  }

  /** A tombstone written, or a record that expired, before `olderThan`; or a dead member (see above). */
  private purgeable(k: string, rec: Buffer, olderThan: number): boolean {
    if (isTombstone(rec)) return recordVersion(rec).wall < olderThan;
    if (recordKind(rec) === KIND.member) {
      const header = this.opts.headerOf(k);
      if (isDead(recordVersionOf(rec), header)) return true;
      const m = decodeMember(rec.subarray(payloadOffset(rec)), true);
      return (header === undefined || !isPresent(m)) && newestMemberChange(m) < olderThan;
    }
    const at = recordExpiry(rec);
    return at !== 0 && at < olderThan;
  }
}
