import { FLAG_EXPIRY, FLAG_TOMBSTONE, KIND, kindOf, recordExpiry, recordFlags } from './record.js';

/**
 * The store's live and tombstone counts (DBSIZE, STATS), adjusted per write. A record counts as live,
 * or as a tombstone (deleted, or expired). A live record that will expire is tracked until its time
 * comes, when the next look at the counts moves it to the tombstones: no write happens at expiry.
 * A set's header counts as a tombstone while the set has no members (`isEmptySet`); the store takes it
 * back and adds it again when that changes. Member records are not keys and are not counted here.
 */
export class RecordCounts {
  private liveCount = 0;
  private tombstoneCount = 0;
  /** Bytes of the live records (key and record) and of the set members counted with `member` (capacity.ts). */
  private bytes = 0;
  private readonly expiring = new ExpiryIndex();

  /** `sizeOf(k)`: the bytes of the record a key (latin1) holds now, for a live one whose time came (counted live until then). */
  constructor(
    private readonly isEmptySet: (k: string, rec: Buffer, o: number) => boolean,
    private readonly sizeOf: (k: string) => number,
  ) {}

  get live(): number {
    this.sweep();
    return this.liveCount;
  }

  get tombstones(): number {
    this.sweep();
    return this.tombstoneCount;
  }

  /** Live records that will expire. */
  get expiringCount(): number {
    this.sweep();
    return this.expiring.size;
  }

  /** The bytes of the live records and set members (capacity.ts). */
  get liveBytes(): number {
    this.sweep();
    return this.bytes;
  }

  /** Adds (`sign` 1) or takes back (-1) a set member of `bytes` bytes (members are not keys: not counted as records). */
  member(bytes: number, sign: 1 | -1): void {
    this.bytes += sign * bytes;
  }

  /** Records of either kind, without sweeping (an estimate is enough for its callers). */
  get total(): number {
    return this.liveCount + this.tombstoneCount;
  }

  /**
   * Adds (`sign` 1) or takes back (-1) the part of the record at `o` of `rec` (key `k`, latin1; only
   * read for records with an expiry and sets' headers; `bytes` with its key) in the counts.
   */
  count(k: string, rec: Buffer, o: number, sign: 1 | -1, bytes: number): void {
    const flags = recordFlags(rec, o);
    if (kindOf(flags) === KIND.set && this.isEmptySet(k, rec, o)) {
      this.tombstoneCount += sign;
      return;
    }
    if (sign < 0 && (flags & FLAG_EXPIRY) !== 0 && this.expiring.remove(k)) {
      this.liveCount--;
      this.bytes -= bytes;
      return;
    }
    const at = (flags & FLAG_EXPIRY) === 0 ? 0 : recordExpiry(rec, o);
    if ((flags & FLAG_TOMBSTONE) !== 0 || (at !== 0 && (sign < 0 || at <= Date.now()))) {
      this.tombstoneCount += sign;
      return;
    }
    this.liveCount += sign;
    this.bytes += sign * bytes;
    if (at !== 0) this.expiring.add(k, at);
  }

  /** The counts as they stand (records whose time has come swept), and the expiring keys with their times. */
  saved(): { live: number; tombstones: number; liveBytes: number; expiring: ReadonlyMap<string, number> } {
    this.sweep();
    return { live: this.liveCount, tombstones: this.tombstoneCount, liveBytes: this.bytes, expiring: this.expiring.entries };
  }

  /** Counts as `saved()` gave them (a snapshot, tally.ts), in place of counting every record. */
  restore(live: number, tombstones: number, liveBytes: number, expiring: Map<string, number>): void {
    this.liveCount = live;
    this.tombstoneCount = tombstones;
    this.bytes = liveBytes;
    this.expiring.restore(expiring);
  }

  private sweep(): void {
    const due = this.expiring.sweep(Date.now());
    for (const k of due) this.bytes -= this.sizeOf(k);
    this.liveCount -= due.length;
    this.tombstoneCount += due.length;
  }
}

/**
 * The live keys that carry an expiry time, so the store's counts (DBSIZE, STATS) notice a key turning
 * absent when its time comes, with no write: `sweep(now)` reports the keys whose time has come since
 * the last sweep, earliest first. Keys by latin1 string, as the overlay has them.
 *
 * A min-heap of (time, key) with lazy deletion: an entry whose key was rewritten or removed since is
 * skipped when it surfaces, and the heap is rebuilt from the map when stale entries outnumber live ones.
 */
class ExpiryIndex {
  private at = new Map<string, number>();
  private heap: [number, string][] = [];

  get size(): number {
    return this.at.size;
  }

  /** Each tracked key's time (read-only). */
  get entries(): ReadonlyMap<string, number> {
    return this.at;
  }

  /** Tracks exactly the keys of `at`, at their times. */
  restore(at: Map<string, number>): void {
    this.at = at;
    this.rebuild();
  }

  add(k: string, at: number): void {
    this.at.set(k, at);
    this.push([at, k]);
    if (this.heap.length > 2 * this.at.size + 1024) this.rebuild();
  }

  /** Stops tracking `k`; whether it was tracked (counted live). */
  remove(k: string): boolean {
    return this.at.delete(k);
  }

  /** Removes and returns the tracked keys whose time is `now` or earlier. */
  sweep(now: number): string[] {
    const due: string[] = [];
    for (let top = this.heap[0]; top !== undefined && top[0] <= now; top = this.heap[0]) {
      this.pop();
      if (this.at.get(top[1]) === top[0]) {
        this.at.delete(top[1]);
        due.push(top[1]);
      }
    }
    return due;
  }

  /** The heap anew from the map, bottom-up (Floyd): linear in its size. */
  private rebuild(): void {
    const h: [number, string][] = [];
    for (const [k, at] of this.at) h.push([at, k]);
    this.heap = h;
    for (let i = (h.length >> 1) - 1; i >= 0; i--) this.down(i, h[i] as [number, string]);
  }

  private push(e: [number, string]): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((h[parent] as [number, string])[0] <= e[0]) break;
      h[i] = h[parent] as [number, string];
      i = parent;
    }
    h[i] = e;
  }

  private pop(): void {
    const last = this.heap.pop();
    if (last !== undefined && this.heap.length > 0) this.down(0, last);
  }

  /** Puts `e` at `i` and moves it down until both children are later. */
  private down(i: number, e: [number, string]): void {
    const h = this.heap;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const c = r < h.length && (h[r] as [number, string])[0] < (h[l] as [number, string])[0] ? r : l;
      if ((h[c] as [number, string])[0] >= e[0]) break;
      h[i] = h[c] as [number, string];
      i = c;
    }
    h[i] = e;
  }
}
