import type { KeyHash } from '../merkle/hash.js';
import type { Hlc, Version } from '../hlc.js';

/*
 * One stored record, as LMDB holds it under the client's key (DESIGN.md sections 4 and 6):
 *
 *   0       format (3; 2 is read as well)
 *   1       flags: bit 0 tombstone; bit 1 an expiry register follows the node id; bit 2 client flags
 *           come before the payload (plain values only); bits 4-5 the kind (KIND: plain bytes,
 *           PN-counter, add-wins set's header, set member)
 *   2..7    epoch HLC wall milliseconds, 48-bit big-endian
 *   8..9    epoch HLC counter, big-endian
 *   10..25  Merkle item hash (16 bytes), so start-up rebuilds the tree without rehashing values
 *   26..33  the key's 64-bit keyed hash, big-endian (its top bits are the key's Merkle segment)
 *   34      n = length of the epoch's node id (0 only for the zero epoch, see state.ts)
 *   35..    node id (UTF-8, n bytes), then the body:
 *             with bit 1: the expiry register, at (6: ms since the epoch, 0 = none), then its version:
 *               wall (6), counter (2), node id length (1), node id
 *             with bit 2: the client's 32-bit flags (memcached's), big-endian; absent means 0
 *             then the payload: a plain value's bytes, a counter's encoding (counter.ts), nothing for
 *             a set's header, a member's encoding (members.ts, under the member's internal key)
 *
 * The epoch is the version of the last-writer-wins write (SET, DEL, ...) the record descends from; for a
 * plain record it is simply its version. Counters and sets keep their epoch while they change (state.ts).
 *
 * Format 2 (the previous release) is format 3 with flags 0 or 1 and no expiry register: such records
 * are read as they are, and their item hashes are unchanged. Format 1 (releases before the Merkle
 * tree) had no hashes: 0 format, 1 flags, 2..9 HLC, 10 node id length, 11.. node id and value. The store
 * rewrites such records when it opens (`decodeFormat1`).
 */
export const RECORD_FORMAT = 3;
const FORMAT_2 = 2;
export const FLAG_TOMBSTONE = 0x01;
export const FLAG_EXPIRY = 0x02;
export const FLAG_CLIENT_FLAGS = 0x04;
const KIND_SHIFT = 4;

/** What a record holds: its merge rule (state.ts). */
export const KIND = { plain: 0, counter: 1, set: 2, member: 3 } as const;
export type Kind = (typeof KIND)[keyof typeof KIND];

export const ITEM = 10;
export const KEY_HASH = 26;
export const NODE_LEN = 34;
export const HEADER = 35;
/** at (6), wall (6), counter (2), node id length (1). */
const REGISTER_FIXED = 15;

export interface StoredRecord extends Version {
  /** FLAG_* bits and the kind, as byte 1 holds them. */
  readonly flags: number;
  /** Everything after the node id: the expiry register if flagged, then the payload. */
  readonly body: Buffer;
  /** The record's Merkle item hash (16 bytes as a latin1 string); see merkle/hash.ts. */
  readonly item: string;
  /** The key's keyed hash. */
  readonly keyHash: KeyHash;
}

/** The flags byte of a record of `kind`. */
export function kindFlags(kind: Kind): number {
  return kind << KIND_SHIFT;
}

/** The kind a flags byte names. */
export function kindOf(flags: number): Kind {
  return ((flags >> KIND_SHIFT) & 3) as Kind;
}

/** Every bit a flags byte may have set. */
export const KNOWN_FLAGS = FLAG_TOMBSTONE | FLAG_EXPIRY | FLAG_CLIENT_FLAGS | (3 << KIND_SHIFT);
/** Bytes of the client flags field. */
export const CLIENT_FLAGS_BYTES = 4;

// Every record carries its epoch's node id, one of a few: keep their bytes at hand.
const nodeIds = new Map<string, Buffer>();

export function nodeBytes(node: string): Buffer {
  let bytes = nodeIds.get(node);
  if (bytes === undefined) {
    bytes = Buffer.from(node, 'utf8');
    if (bytes.length > 255) throw new RangeError('node id longer than 255 bytes');
    if (nodeIds.size < 256) nodeIds.set(node, bytes);
  }
  return bytes;
}

export function encodeRecord(rec: StoredRecord): Buffer {
  const node = nodeBytes(rec.node);
  const buf = Buffer.allocUnsafe(HEADER + node.length + rec.body.length);
  writeRecord(buf, 0, rec, node);
  return buf;
}

/**
 * Writes the record at `o` of `buf`, which has room for it. Byte stores and `set` rather than Buffer's
 * write methods: on this hot path (every write) those cost a generic property load each under V8's
 * concurrent recompilation (measured 3-10x slower on Node 20).
 */
function writeRecord(buf: Buffer, o: number, rec: StoredRecord, node: Buffer): void {
  buf[o] = RECORD_FORMAT;
  buf[o + 1] = rec.flags;
  put16(buf, o + 2, Math.floor(rec.wall / 2 ** 32));
  put32(buf, o + 4, rec.wall >>> 0);
  put16(buf, o + 8, rec.counter);
  const item = rec.item;
  for (let i = 0; i < 16; i++) buf[o + ITEM + i] = item.charCodeAt(i);
  put32(buf, o + KEY_HASH, rec.keyHash.hi);
  put32(buf, o + KEY_HASH + 4, rec.keyHash.lo);
  buf[o + NODE_LEN] = node.length;
  buf.set(node, o + HEADER);
  buf.set(rec.body, o + HEADER + node.length);
}

/** Big-endian 16 and 32 bits at `o`. */
export function put16(buf: Buffer, o: number, v: number): void {
  buf[o] = v >>> 8;
  buf[o + 1] = v;
}

export function put32(buf: Buffer, o: number, v: number): void {
  buf[o] = v >>> 24;
  buf[o + 1] = v >>> 16;
  buf[o + 2] = v >>> 8;
  buf[o + 3] = v;
}

/*
 * A keyed record: the key and its encoded record in one buffer, as the write-ahead log stores an entry
 * (wal.ts) and the store keeps a pending write. 0..1 key length (big-endian), then the key, then the record.
 */

/** Encodes `key` and `rec` as one keyed record: one allocation serves the log, the overlay and LMDB. */
export function encodeKeyedRecord(key: Buffer, rec: StoredRecord): Buffer {
  const node = nodeBytes(rec.node);
  const buf = Buffer.allocUnsafe(2 + key.length + HEADER + node.length + rec.body.length);
  put16(buf, 0, key.length);
  buf.set(key, 2);
  writeRecord(buf, 2 + key.length, rec, node);
  return buf;
}

/** Where the record starts in a keyed record whose key has `keyLength` bytes. */
export function keyedRecordOffset(keyLength: number): number {
  return 2 + keyLength;
}

/** The length of a keyed record's key. */
export function keyedKeyLength(buf: Buffer): number {
  return ((buf[0] as number) << 8) | (buf[1] as number);
}

/** The key of a keyed record (a view). */
export function keyedKey(buf: Buffer): Buffer {
  return buf.subarray(2, keyedRecordOffset(keyedKeyLength(buf)));
}

/** The record of a keyed record (a view). */
export function keyedRecord(buf: Buffer): Buffer {
  return buf.subarray(keyedRecordOffset(buf.readUInt16BE(0)));
}

/** Whether `buf` is a well-formed keyed record (for entries read back from the log). */
export function isKeyedRecord(buf: Buffer): boolean {
  if (buf.length < 2) return false;
  const keyLen = buf.readUInt16BE(0);
  const rec = buf.subarray(2 + keyLen);
  if (keyLen === 0 || rec.length < HEADER || (rec[0] !== RECORD_FORMAT && rec[0] !== FORMAT_2)) return false;
  const body = HEADER + (rec[NODE_LEN] ?? 0);
  if (rec.length < body) return false;
  if (((rec[1] as number) & FLAG_EXPIRY) !== 0 && rec.length < body + REGISTER_FIXED) return false;
  return rec.length >= payloadOffset(rec);
}

/** The flags byte: FLAG_* bits and the kind. */
export function recordFlags(buf: Buffer, o = 0): number {
  return buf[o + 1] ?? 0;
}

/** Whether the record (at `o` of `buf`) is a tombstone. */
export function isTombstone(buf: Buffer, o = 0): boolean {
  return ((buf[o + 1] ?? 0) & FLAG_TOMBSTONE) !== 0;
}

/** The kind of record: plain, counter or set. */
export function recordKind(buf: Buffer, o = 0): Kind {
  return kindOf(buf[o + 1] ?? 0);
}

/** Whether the record is a plain value or tombstone with no expiry register: the common case. */
export function isSimple(buf: Buffer, o = 0): boolean {
  return ((buf[o + 1] ?? 0) & ~FLAG_TOMBSTONE) === 0;
}

/** When the record expires (ms since the epoch), or 0 if it does not. */
export function recordExpiry(buf: Buffer, o = 0): number {
  if (((buf[o + 1] ?? 0) & FLAG_EXPIRY) === 0) return 0;
  return buf.readUIntBE(o + HEADER + (buf[o + NODE_LEN] ?? 0), 6);
}

/**
 * Whether the record reads as absent at `now`: a tombstone, or expired. Every node decides this from
 * the record and its own clock, so an expired key is gone everywhere without a delete being written.
 */
export function isAbsent(buf: Buffer, now: number, o = 0): boolean {
  const flags = buf[o + 1] ?? 0;
  if ((flags & FLAG_TOMBSTONE) !== 0) return true;
  if ((flags & FLAG_EXPIRY) === 0) return false;
  const at = recordExpiry(buf, o);
  return at !== 0 && at <= now;
}

/** The record's epoch clock reading, without decoding the rest. */
export function recordVersion(buf: Buffer): Hlc {
  return { wall: buf.readUInt16BE(2) * 2 ** 32 + buf.readUInt32BE(4), counter: buf.readUInt16BE(8) };
}

/** Where the 16-byte Merkle item hash sits in a record. */
export const ITEM_OFFSET = ITEM;

/** The record's Merkle item hash as a latin1 string. */
export function recordItem(buf: Buffer): string {
  return buf.toString('latin1', ITEM, ITEM + 16);
}

/** The top 32 bits of the key's keyed hash (they choose its segment), of the record at `o` of `buf`. */
export function recordKeyHashHi(buf: Buffer, o = 0): number {
  return get32(buf, o + KEY_HASH);
}

/** The key's stored keyed hash (of the record at `o` of `buf`). */
export function recordKeyHash(buf: Buffer, o = 0): KeyHash {
  return { hi: get32(buf, o + KEY_HASH), lo: get32(buf, o + KEY_HASH + 4) };
}

/** A key hash from its 8 bytes, big-endian (as records and the key-hash index hold it). */
export function keyHashOf(bytes: Buffer): KeyHash {
  return { hi: get32(bytes, 0), lo: get32(bytes, 4) };
}

/** Big-endian unsigned 32 bits at `o` (see writeRecord for why not readUInt32BE). */
function get32(buf: Buffer, o: number): number {
  return (buf[o] as number) * 0x1000000 + (((buf[o + 1] as number) << 16) | ((buf[o + 2] as number) << 8) | (buf[o + 3] as number));
}

/** The 8 bytes of the key's keyed hash, as stored (a view into `buf`). */
export function recordKeyHashBytes(buf: Buffer): Buffer {
  return buf.subarray(KEY_HASH, KEY_HASH + 8);
}

/**
 * Compares `v` with the record's epoch in last-writer-wins order (hlc.ts, compareVersion) without
 * decoding the record: the node id is read only when the clock readings tie.
 */
export function compareWithRecord(v: Version, buf: Buffer): number {
  const wall = buf.readUInt16BE(2) * 2 ** 32 + buf.readUInt32BE(4);
  if (v.wall !== wall) return v.wall - wall;
  const counter = buf.readUInt16BE(8);
  if (v.counter !== counter) return v.counter - counter;
  const node = recordNode(buf);
  return v.node < node ? -1 : v.node > node ? 1 : 0;
}

/** The record's epoch: clock reading and node id. */
export function recordVersionOf(buf: Buffer): Version {
  return { wall: buf.readUInt16BE(2) * 2 ** 32 + buf.readUInt32BE(4), counter: buf.readUInt16BE(8), node: recordNode(buf) };
}

/** The record's epoch (at `o` of `buf`) as a string that equals another record's exactly when the epochs do. */
export function recordEpochId(buf: Buffer, o = 0): string {
  return buf.toString('latin1', o + 2, o + 10) + buf.toString('latin1', o + HEADER, o + HEADER + (buf[o + NODE_LEN] ?? 0));
}

/** The id of the node whose write began the record's epoch. */
export function recordNode(buf: Buffer): string {
  return buf.toString('utf8', HEADER, HEADER + (buf[NODE_LEN] ?? 0));
}

/** The body (expiry register and payload) as a view into `buf`. */
export function recordBody(buf: Buffer, end = buf.length): Buffer {
  return buf.subarray(HEADER + (buf[NODE_LEN] ?? 0), end);
}

/** Where the payload starts: after the node id and, if they are there, the expiry register and client flags. */
export function payloadOffset(buf: Buffer): number {
  const flags = buf[1] ?? 0;
  let o = HEADER + (buf[NODE_LEN] ?? 0);
  if ((flags & FLAG_EXPIRY) !== 0) o += REGISTER_FIXED + (buf[o + REGISTER_FIXED - 1] ?? 0);
  return (flags & FLAG_CLIENT_FLAGS) === 0 ? o : o + CLIENT_FLAGS_BYTES;
}

/** The client flags stored with a plain value (memcached's), 0 when there are none. */
export function recordClientFlags(buf: Buffer): number {
  if (((buf[1] ?? 0) & FLAG_CLIENT_FLAGS) === 0) return 0;
  return buf.readUInt32BE(payloadOffset(buf) - CLIENT_FLAGS_BYTES);
}

/** The payload (a plain record's value) as a view into `buf` (no copy). */
export function recordValue(buf: Buffer, end = buf.length): Buffer {
  return buf.subarray(payloadOffset(buf), end);
}

export function decodeRecord(buf: Buffer): StoredRecord {
  if (buf.length < HEADER || (buf[0] !== RECORD_FORMAT && buf[0] !== FORMAT_2)) {
    throw new RangeError(`unknown record format ${buf[0] ?? 'empty'}`);
  }
  return {
    flags: recordFlags(buf),
    ...recordVersion(buf),
    item: recordItem(buf),
    keyHash: recordKeyHash(buf),
    node: recordNode(buf),
    body: Buffer.from(recordBody(buf)),
  };
}

/** Reads a format-1 record (see the layout above), for the upgrade. */
export function decodeFormat1(buf: Buffer): Omit<StoredRecord, 'item' | 'keyHash'> {
  if (buf.length < 11 || buf[0] !== 1) throw new RangeError('not a format-1 record');
  const nodeLen = buf[10] as number;
  return {
    flags: isTombstone(buf) ? FLAG_TOMBSTONE : 0,
    ...recordVersion(buf),
    node: buf.toString('utf8', 11, 11 + nodeLen),
    body: isTombstone(buf) ? Buffer.alloc(0) : Buffer.from(buf.subarray(11 + nodeLen)),
  };
}

/** The key-hash index's key of a record (keyhash.ts): its key hash (8 bytes, big-endian, as stored in `rec`), then the key. */
export function indexKey(rec: Buffer, key: Buffer): Buffer {
  const buf = Buffer.allocUnsafe(8 + key.length);
  for (let i = 0; i < 8; i++) buf[i] = rec[KEY_HASH + i] as number;
  buf.set(key, 8);
  return buf;
}

/*
 * The expiry register at the start of a body (FLAG_EXPIRY): at (6: ms since the epoch, 0 = none),
 * then its version: wall (6), counter (2), node id length (1), node id.
 */

/** Bytes of an expiry register whose version's node id has `nodeLength` bytes. */
export function registerLength(nodeLength: number): number {
  return REGISTER_FIXED + nodeLength;
}

/** Writes an expiry register at `o` of `buf` (`node`: the version's node id, UTF-8); returns the offset after it. */
export function writeRegister(buf: Buffer, o: number, at: number, version: Hlc, node: Buffer): number {
  buf.writeUIntBE(at, o, 6);
  buf.writeUIntBE(version.wall, o + 6, 6);
  buf.writeUInt16BE(version.counter, o + 12);
  buf[o + 14] = node.length;
  return o + REGISTER_FIXED + node.copy(buf, o + REGISTER_FIXED);
}

/** Reads the expiry register at the start of `body` (the node id unchecked, a view); undefined if cut short. */
export function readRegister(body: Buffer): { at: number; wall: number; counter: number; node: Buffer; end: number } | undefined {
  if (body.length < REGISTER_FIXED) return undefined;
  const end = REGISTER_FIXED + (body[REGISTER_FIXED - 1] as number);
  if (body.length < end) return undefined;
  return { at: body.readUIntBE(0, 6), wall: body.readUIntBE(6, 6), counter: body.readUInt16BE(12), node: body.subarray(REGISTER_FIXED, end), end };
}
