import { crc32 } from 'node:zlib';
import type { Databases } from './databases.js';
import type { Hlc } from '../hlc.js';

/*
 * The tally's snapshot (tally.ts): what the start-up scan computes, saved at a clean stop so that the
 * next start-up need not read every record. It lives in LMDB's `snapshot` database, written in one
 * synchronous transaction after the log is deleted (LMDB holds every write), and deleted again by the
 * next start-up, asynchronously (lmdb's write thread does it while the node starts: freeing a large
 * snapshot's pages and syncing took up to half a second of a million-key start-up). A crash that finds
 * it again finds it exact (nothing reached LMDB since) or refused by the checks below: every write goes
 * to the log first, and any write that reaches LMDB commits a later transaction. It is used only if
 * all of these hold, else the scan runs:
 *
 * - the log left no segment (a crash leaves one; a clean stop deletes them);
 * - LMDB's last committed transaction is the one that wrote it: any write since, by any program or
 *   release that does not know of the snapshot (an upgrade, a tool), moves that number on;
 * - its format, the tree's segment bits and the cluster secret's fingerprint are this store's;
 * - every chunk is there and the CRC-32 of their bytes matches; the sections parse.
 *
 * Layout: key 0x00 the head, keys 0x01 + u32 (big-endian) the chunks of one byte stream (the sections
 * one after another), each at most CHUNK_BYTES.
 *
 * Head (little-endian): 0 format (u8), 1 tree bits (u8), 2..17 the secret's fingerprint (16 hex
 * characters), 18 LMDB transaction id (f64), 26 clock floor wall (f64), 34 its counter (u16), 36 live
 * (f64), 44 tombstones (f64), 52 chunk count (u32), 56 CRC-32 of the stream (u32), 60 the sections'
 * lengths (f64 each, SECTIONS of them), then the live records' bytes (f64). Format 1 had no such bytes.
 */

const FORMAT = 2;
const CHUNK_BYTES = 1 << 20;
const HEAD_KEY = Buffer.from([0]);
const CHUNK_TAG = 1;
const FINGERPRINT_BYTES = 16;
const SECTIONS = ['tree', 'expiring', 'cards', 'records'] as const;
const HEAD_BYTES = 68 + 8 * SECTIONS.length;
/** Where the head keeps the live records' bytes (capacity.ts), after the sections' lengths. */
const LIVE_BYTES_AT = 60 + 8 * SECTIONS.length;

/** What the saved state depends on besides the records: the tree's shape and the hashes' key. */
export interface SnapshotMark {
  readonly bits: number;
  readonly fingerprint: string;
}

/** What the tally saves; the sections are encoded by their owners (tally.ts, encodeEntries). */
export interface Snapshot {
  /** What the clock must move past. */
  readonly floor: Hlc;
  readonly live: number;
  readonly tombstones: number;
  /** The bytes of the live records and set members (counts.ts). */
  readonly liveBytes: number;
  readonly tree: Buffer;
  readonly expiring: Buffer;
  readonly cards: Buffer;
  readonly records: Buffer;
}

export type SnapshotTarget = Pick<Databases, 'root' | 'snapshot'>;

/** A snapshot found at start-up: usable, or why not. */
export type Taken = { readonly snapshot: Snapshot } | { readonly ignored: string };

/** Replaces any snapshot by `s`, in one synchronous transaction that also records its own id. */
export function saveSnapshot(t: SnapshotTarget, mark: SnapshotMark, s: Snapshot): void {
  const sections = SECTIONS.map((name) => s[name]);
  const stream = Buffer.concat(sections);
  const chunks = Math.ceil(stream.length / CHUNK_BYTES);
  const old = keysOf(t);
  t.root.transactionSync(() => {
    for (const k of old) void t.snapshot.remove(k);
    for (let i = 0; i < chunks; i++) void t.snapshot.put(chunkKey(i), stream.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES));
    const head = Buffer.alloc(HEAD_BYTES);
    head[0] = FORMAT;
    head[1] = mark.bits;
    head.write(mark.fingerprint.padEnd(FINGERPRINT_BYTES).slice(0, FINGERPRINT_BYTES), 2, 'latin1');
    head.writeDoubleLE(t.root.getWriteTxnId(), 18);
    head.writeDoubleLE(s.floor.wall, 26);
    head.writeUInt16LE(s.floor.counter, 34);
    head.writeDoubleLE(s.live, 36);
    head.writeDoubleLE(s.tombstones, 44);
    head.writeUInt32LE(chunks, 52);
    head.writeUInt32LE(crc32(stream), 56);
    sections.forEach((b, i) => head.writeDoubleLE(b.length, 60 + 8 * i));
    head.writeDoubleLE(s.liveBytes, LIVE_BYTES_AT);
    void t.snapshot.put(HEAD_KEY, head);
  });
}

/**
 * Reads the snapshot a clean stop saved, if any, and deletes it whether or not it is usable (`removed`,
 * asynchronous; it never rejects: a snapshot left behind is replaced by the next save, and refused by
 * the next start-up if anything was written since): undefined if there was none.
 */
export function takeSnapshot(t: SnapshotTarget, mark: SnapshotMark): { taken: Taken; removed: Promise<void> } | undefined {
  const keys = keysOf(t);
  if (keys.length === 0) return undefined;
  let taken: Taken;
  try {
    taken = read(t, mark, keys.length);
  } catch (err) {
    taken = { ignored: `unreadable: ${(err as Error).message}` };
  }
  const removed = Promise.all(keys.map((k) => t.snapshot.remove(k))).then(
    () => undefined,
    () => undefined,
  );
  return { taken, removed };
}

function read(t: SnapshotTarget, mark: SnapshotMark, entries: number): Taken {
  const head = t.snapshot.getBinary(HEAD_KEY);
  if (head === undefined || head.length === 0) return { ignored: 'no head' };
  if (head[0] !== FORMAT) return { ignored: `format ${head[0]}` };
  if (head.length !== HEAD_BYTES) return { ignored: 'head cut short' };
  if (head[1] !== mark.bits) return { ignored: `saved with ${head[1]} tree bits` };
  if (head.toString('latin1', 2, 2 + FINGERPRINT_BYTES).trimEnd() !== mark.fingerprint) return { ignored: 'saved with another cluster secret' };
  const txn = head.readDoubleLE(18);
  const last = (t.root.getStats() as { lastTxnId: number }).lastTxnId;
  if (txn !== last) return { ignored: `LMDB was written after it (transaction ${last}, saved at ${txn})` };
  const chunks = head.readUInt32LE(52);
  if (entries !== chunks + 1) return { ignored: `${entries - 1} chunks, ${chunks} saved` };
  const lengths = SECTIONS.map((_, i) => head.readDoubleLE(60 + 8 * i));
  const total = lengths.reduce((a, b) => a + b, 0);
  if (!lengths.every((n) => Number.isSafeInteger(n) && n >= 0) || Math.ceil(total / CHUNK_BYTES) !== chunks) return { ignored: 'section lengths' };
  const stream = Buffer.allocUnsafe(total);
  for (let i = 0; i < chunks; i++) {
    const chunk = t.snapshot.getBinary(chunkKey(i));
    const want = Math.min(CHUNK_BYTES, total - i * CHUNK_BYTES);
    if (chunk?.length !== want) return { ignored: `chunk ${i}` };
    chunk.copy(stream, i * CHUNK_BYTES);
  }
  if (crc32(stream) !== head.readUInt32LE(56)) return { ignored: 'checksum mismatch' };
  const at: number[] = [0];
  lengths.forEach((n, i) => at.push((at[i] as number) + n));
  const section = (i: number): Buffer => stream.subarray(at[i], at[i + 1]);
  return {
    snapshot: {
      floor: { wall: head.readDoubleLE(26), counter: head.readUInt16LE(34) },
      live: head.readDoubleLE(36),
      tombstones: head.readDoubleLE(44),
      liveBytes: head.readDoubleLE(LIVE_BYTES_AT),
      tree: section(0),
      expiring: section(1),
      cards: section(2),
      records: section(3),
    },
  };
}

function keysOf(t: SnapshotTarget): Buffer[] {
  return [...t.snapshot.getKeys({})].map((k) => Buffer.from(k));
}

function chunkKey(i: number): Buffer {
  const key = Buffer.allocUnsafe(5);
  key[0] = CHUNK_TAG;
  key.writeUInt32BE(i, 1);
  return key;
}

/**
 * A map of latin1 strings (keys, set groups) to numbers as bytes: per entry the string's length (u16,
 * big-endian), the string, the number (f64, little-endian).
 */
export function encodeEntries(map: ReadonlyMap<string, number>): Buffer {
  let bytes = 0;
  for (const k of map.keys()) bytes += 10 + k.length;
  const out = Buffer.allocUnsafe(bytes);
  let o = 0;
  for (const [k, n] of map) {
    if (k.length > 0xffff) throw new RangeError('key too long for a snapshot');
    out.writeUInt16BE(k.length, o);
    o += 2 + out.write(k, o + 2, 'latin1');
    o = out.writeDoubleLE(n, o);
  }
  return out;
}

/** The map encodeEntries wrote; a RangeError if the bytes are not such a map. */
export function decodeEntries(buf: Buffer): Map<string, number> {
  const map = new Map<string, number>();
  // A DataView and byte reads: Buffer's read methods cost more than the Map here (measured).
  const view = new DataView(buf.buffer, buf.byteOffset, buf.length);
  let o = 0;
  while (o < buf.length) {
    const end = o + 2 + (((buf[o] as number) << 8) | (buf[o + 1] ?? 0));
    if (end + 8 > buf.length) throw new RangeError('entry cut short');
    map.set(buf.toString('latin1', o + 2, end), view.getFloat64(end, true));
    o = end + 8;
  }
  return map;
}
