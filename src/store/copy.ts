import type { Database } from 'lmdb';
import type { Hlc } from '../hlc.js';
import type { Limits } from '../rules.js';
import { checkKeyKind, checkRecordKey, isMemberKey } from './members.js';
import { FLAG_TOMBSTONE, HEADER, ITEM, KEY_HASH, NODE_LEN, nodeBytes, put16, put32, RECORD_FORMAT } from './record.js';
import type { RemoteMerge } from './remote.js';
import { checkSimplePayload, parseBody, type RecordState } from './state.js';
import type { CopiedRecords, CopyResult, Hashes } from './types.js';
import type { Ack } from './writepath.js';

export interface CopyMergeOptions {
  /** LMDB's records, read only: whether a key is there, and the first key there from a key on. */
  readonly db: Database<Buffer, Buffer>;
  /** Merges a remote clock reading into ours; returns it as merged (clamped if too far ahead). */
  readonly observe: (remote: Hlc) => Hlc;
  /** Whether a write of the key (latin1) is pending. */
  readonly isPending: (k: string) => boolean;
  /** Tombstones written before this time (ms) may have been purged here. */
  readonly purgedBefore: () => number;
  /** Stores the keyed record of a key that holds nothing, pending or in LMDB (origin 'remote'). */
  readonly add: (k: string, keyed: Buffer) => Ack;
  /** The merge every other state goes through (remote.ts). */
  readonly remote: Pick<RemoteMerge, 'apply' | 'applyObserved'>;
  /** Told of each state refused because it may bring back a purged key. */
  readonly onRefused: () => void;
}

/**
 * Merges records copied from a peer (anti-entropy's streams: a new node filling itself) as remote.ts
 * would, with less work for the common case of a stream: a plain value or tombstone under a key that
 * holds nothing here. Such a record is stored as it came, its keyed record made straight from the
 * frame's bytes (no state decoded and encoded again; its sender's hashes, which a peer that proved the
 * cluster secret sends, kept). Everything else (a key with a pending write or a record in LMDB, a
 * counter, a set, an expiry, a clock reading clamped) goes through the one merge, remote.ts.
 *
 * Whether LMDB holds a key is answered, where it can be, without a lookup per record: a stream comes
 * in key order, and one seek finds the first key LMDB holds from a record on, so every record before
 * that key (the whole rest of the frame, for an empty store) is known absent. That holds for one
 * synchronous batch only: LMDB gains a key when a batch of pending writes commits, and those writes
 * stay pending (and are checked first) until the commit is seen here, which cannot happen mid-batch.
 */
export class CopyMerge {
  /** Of this batch: LMDB holds no key in [gapFrom, gapTo) (gapTo undefined: none to the end). */
  private gapFrom: Buffer | undefined = undefined;
  private gapTo: Buffer | undefined = undefined;
  /** This batch met a key LMDB holds: it looks each key up rather than seeking gaps. */
  private dense = false;

  constructor(private readonly opts: CopyMergeOptions) {}

  /** Merges every record of `records`, checked as a client's writes would be (ProtocolError). */
  apply(records: CopiedRecords, limits: Limits): CopyResult {
    this.gapFrom = undefined;
    this.gapTo = undefined;
    this.dense = false;
    const horizon = this.opts.purgedBefore();
    let applied = 0;
    let after: Ack = null;
    try {
      while (records.next()) {
        const done = this.one(records, limits, horizon);
        if (done === undefined) continue;
        applied++;
        if (done !== null) after = done;
      }
    } finally {
      // The gap's bounds are views of the frame: not kept past it.
      this.gapFrom = undefined;
      this.gapTo = undefined;
    }
    return { applied, after };
  }

  private one(r: CopiedRecords, limits: Limits, horizon: number): Ack | undefined {
    const buf = r.buf;
    const key = checkRecordKey(buf.subarray(r.keyStart, r.keyEnd), limits);
    const flags = r.flags;
    if ((flags & ~FLAG_TOMBSTONE) !== 0 || isMemberKey(key)) return this.opts.remote.apply(key, stateOf(r, key, limits), hashesOf(r));
    checkSimplePayload(flags, r.bodyEnd - r.bodyStart, limits);
    // The record itself is the clock reading (no object made for it).
    const hlc = this.opts.observe(r);
    const clamped = hlc.wall !== r.wall || hlc.counter !== r.counter;
    const k = buf.toString('latin1', r.keyStart, r.keyEnd);
    if (clamped || this.opts.isPending(k) || !this.absent(key)) return this.opts.remote.applyObserved(key, stateOf(r, key, limits), hlc, hashesOf(r));
    // As remote.ts: a key this node does not hold, last written before the purge horizon, may be one
    // whose delete was purged here.
    if (horizon !== 0 && r.wall < horizon) {
      this.opts.onRefused();
      return undefined;
    }
    return this.opts.add(k, encodeCopiedRecord(k, r));
  }

  /** Whether LMDB holds nothing under `key` (a view of the frame). */
  private absent(key: Buffer): boolean {
    const db = this.opts.db;
    if (this.dense) return db.getBinaryFast(key) === undefined;
    const from = this.gapFrom;
    if (from !== undefined && key.compare(from) >= 0 && (this.gapTo === undefined || key.compare(this.gapTo) < 0)) return true;
    const next = firstKeyFrom(db, key);
    if (next !== undefined && next.equals(key)) {
      // Keys that LMDB holds come in a run (a copy over a store that has them): look each one up.
      this.dense = true;
      return false;
    }
    this.gapFrom = key;
    this.gapTo = next;
    return true;
  }
}

/** The first key LMDB holds at or after `from`. */
function firstKeyFrom(db: Database<Buffer, Buffer>, from: Buffer): Buffer | undefined {
  for (const key of db.getKeys({ start: from, limit: 1 })) return key;
  return undefined;
}

/** The state of the current record, checked (for remote.ts). */
function stateOf(r: CopiedRecords, key: Buffer, limits: Limits): RecordState {
  const state = parseBody({ wall: r.wall, counter: r.counter, node: r.node }, r.flags, r.buf.subarray(r.bodyStart, r.bodyEnd), limits);
  checkKeyKind(key, state);
  return state;
}

/** The current record's hashes as its sender stored them. */
function hashesOf(r: CopiedRecords): Hashes {
  return { item: r.buf.toString('latin1', r.itemAt, r.itemAt + 16), keyHash: r.buf.subarray(r.keyHashAt, r.keyHashAt + 8) };
}

/**
 * The keyed record of a record copied from a peer (CopiedRecords) under key `k` (latin1), made
 * straight from the bytes it arrived in: its flags, epoch, hashes and body, with no object between.
 */
function encodeCopiedRecord(k: string, r: CopiedRecords): Buffer {
  const src = r.buf;
  const node = nodeBytes(r.node);
  const bodyLength = r.bodyEnd - r.bodyStart;
  const buf = Buffer.allocUnsafe(2 + k.length + HEADER + node.length + bodyLength);
  put16(buf, 0, k.length);
  // From the string: Buffer's copy() makes a view of its source for each call.
  buf.write(k, 2, 'latin1');
  const o = 2 + k.length;
  buf[o] = RECORD_FORMAT;
  buf[o + 1] = r.flags;
  put16(buf, o + 2, Math.floor(r.wall / 2 ** 32));
  put32(buf, o + 4, r.wall >>> 0);
  put16(buf, o + 8, r.counter);
  copyBytes(src, r.itemAt, buf, o + ITEM, 16);
  copyBytes(src, r.keyHashAt, buf, o + KEY_HASH, 8);
  buf[o + NODE_LEN] = node.length;
  buf.set(node, o + HEADER);
  const body = o + HEADER + node.length;
  if (bodyLength <= SMALL_COPY) copyBytes(src, r.bodyStart, buf, body, bodyLength);
  else src.copy(buf, body, r.bodyStart, r.bodyEnd);
  return buf;
}

/** Below this, bytes are copied one by one rather than through a view of the source (see encodeCopiedRecord). */
const SMALL_COPY = 256;

function copyBytes(src: Buffer, from: number, dst: Buffer, to: number, n: number): void {
  for (let i = 0; i < n; i++) dst[to + i] = src[from + i] as number;
}
