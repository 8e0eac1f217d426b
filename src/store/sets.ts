import type { Logger } from 'pino';
import type { Databases } from './databases.js';
import type { Version } from '../hlc.js';
import { isPresentEncoded, memberPrefix, setKeyOf } from './members.js';
import type { PendingWrite } from './overlay.js';
import { compareWithRecord, indexKey, isTombstone, KIND, payloadOffset, recordEpochId, recordKind, recordVersionOf } from './record.js';

export interface SetIndexOptions extends Databases {
  readonly logger: Logger;
  /** The record under a key (latin1 `k`), pending writes first (a view). */
  readonly readAt: (key: Buffer, k: string) => Buffer | undefined;
  /** Whether a write to this key (latin1) is pending. */
  readonly isPending: (k: string) => boolean;
  /** The pending writes. */
  readonly pending: () => IterableIterator<PendingWrite>;
  /** Told of each member record removed, inside the transaction that removes it (tree and counts). */
  readonly onRemoved: (k: string, rec: Buffer) => void;
}

/** A pending member record of an old epoch keeps its set in the sweep queue; retried this often. */
const SWEEP_RETRY_MS = 500;

/**
 * What the store knows about its sets' member records (members.ts) beyond the records themselves:
 *
 * - how many members of each (set, epoch) are in the set, so that SCARD, EXISTS and DBSIZE need not
 *   read the members (a set whose members were all removed reads as absent, as in Redis);
 * - which sets have member records at all, so that a write starting a new epoch of a key (DEL, SET)
 *   finds out cheaply whether members of the old epoch are left to remove.
 *
 * Members of an epoch older than their set's header are dead: they are removed from LMDB (and the
 * tree) soon after the header moves on, and refused if a peer offers them again (store.ts). Every
 * replica removes them, so their roots agree again.
 */
export class SetIndex {
  /** Present members per set key and epoch (`setK \0 epochId`). */
  private cards = new Map<string, number>();
  /** Member records (present or not, any epoch) per set key. */
  private records = new Map<string, number>();
  private readonly queued = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly opts: SetIndexOptions) {}

  /** Members in the set whose header (at `o` of `rec`, key `k` in latin1) is given. */
  card(k: string, rec: Buffer, o = 0): number {
    return this.cards.get(`${k}\0${recordEpochId(rec, o)}`) ?? 0;
  }

  /**
   * The set key (latin1) if adding (`sign` 1) or taking back (-1) the member record at `o` of `rec`
   * (internal key `k`, latin1) takes its set's cardinality in the record's epoch from 0 or to 0.
   */
  crossing(k: string, rec: Buffer, o: number, sign: 1 | -1): string | undefined {
    if (!isPresentAt(rec, o)) return undefined;
    const setK = setKeyOf(k);
    const n = this.cards.get(`${setK}\0${recordEpochId(rec, o)}`) ?? 0;
    return n === 0 || n + sign === 0 ? setK : undefined;
  }

  /** Adds (`sign` 1) or takes back (-1) the member record at `o` of `rec` (internal key `k`, latin1). */
  count(k: string, rec: Buffer, o: number, sign: 1 | -1): void {
    const setK = setKeyOf(k);
    const n = (this.records.get(setK) ?? 0) + sign;
    if (n === 0) this.records.delete(setK);
    else this.records.set(setK, n);
    if (!isPresentAt(rec, o)) return;
    const group = `${setK}\0${recordEpochId(rec, o)}`;
    const card = (this.cards.get(group) ?? 0) + sign;
    if (card === 0) this.cards.delete(group);
    else this.cards.set(group, card);
  }

  /** The counts as they stand (read-only): what a clean stop saves (tally.ts). */
  saved(): { cards: ReadonlyMap<string, number>; records: ReadonlyMap<string, number> } {
    return { cards: this.cards, records: this.records };
  }

  /** Counts as `saved()` gave them, in place of counting every member record at start-up. */
  restore(cards: Map<string, number>, records: Map<string, number>): void {
    this.cards = cards;
    this.records = records;
  }

  /** Whether the key (latin1) has member records, of any epoch. */
  hasMembers(setK: string): boolean {
    return this.records.size > 0 && this.records.has(setK);
  }

  /**
   * The members in the set `setKey` (those of the header's epoch, `header`, not removed), pending
   * writes included, in byte order (copies).
   */
  members(setKey: Buffer, header: Buffer): Buffer[] {
    const prefix = memberPrefix(setKey);
    const epoch = recordEpochId(header);
    const found = new Map<string, Buffer | undefined>();
    for (const { key, value } of this.opts.db.getRange({ start: prefix })) {
      if (!startsWith(key, prefix)) break;
      found.set(key.toString('latin1'), isLiveMember(value, epoch) ? Buffer.from(key.subarray(prefix.length)) : undefined);
    }
    for (const p of this.opts.pending()) {
      const key = p.key;
      if (!startsWith(key, prefix)) continue;
      found.set(p.k, isLiveMember(p.rec, epoch) ? Buffer.from(key.subarray(prefix.length)) : undefined);
    }
    const out: Buffer[] = [];
    for (const m of found.values()) if (m !== undefined) out.push(m);
    return out.sort((a, b) => Buffer.compare(a, b));
  }

  /** Queues the removal of the set's members of epochs older than its header's (a write moved it on). */
  sweepLater(setK: string): void {
    this.queued.add(setK);
    if (this.timer !== undefined || this.stopped) return;
    this.timer = setTimeout(() => this.sweep(), 0);
    this.timer.unref();
  }

  /** Runs a queued sweep now (its pending member records, if any, are retried later). */
  sweepNow(): void {
    if (this.queued.size === 0) return;
    clearTimeout(this.timer);
    this.sweep();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /**
   * Removes the queued sets' dead members, each set in one synchronous transaction (nothing reads or
   * writes between a record's check and its removal). A pending member record is left for a retry.
   */
  private sweep(): void {
    this.timer = undefined;
    const { db, index, root } = this.opts;
    const sets = [...this.queued];
    this.queued.clear();
    let removed = 0;
    for (const setK of sets) {
      const setKey = Buffer.from(setK, 'latin1');
      // A copy: LMDB's buffer is reused by the reads below.
      const stored = this.opts.readAt(setKey, setK);
      const header = stored === undefined ? undefined : Buffer.from(stored);
      const prefix = memberPrefix(setKey);
      let retry = false;
      root.transactionSync(() => {
        for (const { key, value } of db.getRange({ start: prefix })) {
          if (!startsWith(key, prefix)) break;
          if (!isDead(recordVersionOf(value), header)) continue;
          const k = key.toString('latin1');
          if (this.opts.isPending(k)) {
            retry = true;
            continue;
          }
          const rec = Buffer.from(value.subarray(0, value.length));
          const copy = Buffer.from(key);
          void db.remove(copy);
          void index.remove(indexKey(rec, copy));
          this.opts.onRemoved(k, rec);
          removed++;
        }
      });
      // Dead members still on their way to LMDB: removed once they are there.
      if (!retry) for (const p of this.opts.pending()) if (startsWith(p.key, prefix) && isDead(recordVersionOf(p.rec), header)) retry = true;
      if (retry) this.queued.add(setK);
    }
    if (removed > 0) this.opts.logger.debug({ removed }, 'removed members of old set epochs');
    if (this.queued.size > 0 && !this.stopped) {
      this.timer = setTimeout(() => this.sweep(), SWEEP_RETRY_MS);
      this.timer.unref();
    }
  }
}

/** Whether the member record at `o` of `rec` is in its set. */
function isPresentAt(rec: Buffer, o: number): boolean {
  const r = o === 0 ? rec : rec.subarray(o);
  return isPresentEncoded(r, payloadOffset(r));
}

/** Whether a member record (of the set whose header is `header`) belongs to the header's epoch and is in the set. */
function isLiveMember(rec: Buffer, epoch: string): boolean {
  return recordEpochId(rec) === epoch && isPresentAt(rec, 0);
}

/** Whether a member of epoch `epoch` is of an epoch older than its set's header (nothing can revive it). */
export function isDead(epoch: Version, header: Buffer | undefined): boolean {
  return header !== undefined && compareWithRecord(epoch, header) < 0;
}

/** Whether a header record is a set's (a live record of kind set; it may still be empty). */
export function isSetHeader(rec: Buffer, o = 0): boolean {
  return recordKind(rec, o) === KIND.set && !isTombstone(rec, o);
}

function startsWith(key: Buffer, prefix: Buffer): boolean {
  return key.length >= prefix.length && key.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
}
