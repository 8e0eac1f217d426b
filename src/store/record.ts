import type { KeyHash } from '../merkle/hash.js';
import type { Hlc, Version } from './hlc.js';

/*
 * One stored record, as LMDB holds it under the client's key (DESIGN.md sections 4 and 6):
 *
 *   0       format (2)
 *   1       flags: bit 0 tombstone; bits 4-7 value kind (0: plain bytes; reserved for counters and sets)
 *   2..7    HLC wall milliseconds, 48-bit big-endian
 *   8..9    HLC counter, big-endian
 *   10..25  Merkle item hash (16 bytes), so start-up rebuilds the tree without rehashing values
 *   26..33  the key's 64-bit keyed hash, big-endian (its top bits are the key's Merkle segment)
 *   34      n = length of the writer's node id
 *   35..    node id (UTF-8, n bytes), then the value bytes
 *
 * The format byte lets a later layout be read beside this one. Format 1 (releases before the Merkle
 * tree) had no hashes: 0 format, 1 flags, 2..9 HLC, 10 node id length, 11.. node id and value. The store
 * rewrites such records as format 2 when it opens (`decodeFormat1`).
 */
export const RECORD_FORMAT = 2;
const FLAG_TOMBSTONE = 0x01;
const ITEM = 10;
const KEY_HASH = 26;
const NODE_LEN = 34;
const HEADER = 35;

export interface StoredRecord extends Version {
  readonly tombstone: boolean;
  readonly value: Buffer;
  /** The record's Merkle item hash (16 bytes as a latin1 string); see merkle/hash.ts. */
  readonly item: string;
  /** The key's keyed hash. */
  readonly keyHash: KeyHash;
}

// Every record carries its writer's node id, one of a few: keep their bytes at hand.
const nodeIds = new Map<string, Buffer>();

function nodeBytes(node: string): Buffer {
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
  const buf = Buffer.allocUnsafe(HEADER + node.length + rec.value.length);
  writeRecord(buf, 0, rec, node);
  return buf;
}

/** Writes the record at `o` of `buf`, which has room for it. */
function writeRecord(buf: Buffer, o: number, rec: StoredRecord, node: Buffer): void {
  buf[o] = RECORD_FORMAT;
  buf[o + 1] = rec.tombstone ? FLAG_TOMBSTONE : 0;
  // 48 bits as 16 + 32: cheaper than writeUIntBE(…, 6).
  buf.writeUInt16BE(Math.floor(rec.wall / 2 ** 32), o + 2);
  buf.writeUInt32BE(rec.wall >>> 0, o + 4);
  buf.writeUInt16BE(rec.counter, o + 8);
  buf.write(rec.item, o + ITEM, 16, 'latin1');
  buf.writeUInt32BE(rec.keyHash.hi, o + KEY_HASH);
  buf.writeUInt32BE(rec.keyHash.lo, o + KEY_HASH + 4);
  buf[o + NODE_LEN] = node.length;
  node.copy(buf, o + HEADER);
  rec.value.copy(buf, o + HEADER + node.length);
}

/*
 * A keyed record: the key and its encoded record in one buffer, as the write-ahead log stores an entry
 * (wal.ts) and the store keeps a pending write. 0..1 key length (big-endian), then the key, then the record.
 */

/** Encodes `key` and `rec` as one keyed record: one allocation serves the log, the overlay and LMDB. */
export function encodeKeyedRecord(key: Buffer, rec: StoredRecord): Buffer {
  const node = nodeBytes(rec.node);
  const buf = Buffer.allocUnsafe(2 + key.length + HEADER + node.length + rec.value.length);
  buf.writeUInt16BE(key.length, 0);
  key.copy(buf, 2);
  writeRecord(buf, 2 + key.length, rec, node);
  return buf;
}

/** Where the record starts in a keyed record whose key has `keyLength` bytes. */
export function keyedRecordOffset(keyLength: number): number {
  return 2 + keyLength;
}

/** The key of a keyed record (a view). */
export function keyedKey(buf: Buffer): Buffer {
  return buf.subarray(2, keyedRecordOffset(buf.readUInt16BE(0)));
}

/** The record of a keyed record (a view). */
export function keyedRecord(buf: Buffer): Buffer {
  return buf.subarray(keyedRecordOffset(buf.readUInt16BE(0)));
}

/** Whether `buf` is a well-formed keyed record (for entries read back from the log). */
export function isKeyedRecord(buf: Buffer): boolean {
  if (buf.length < 2) return false;
  const keyLen = buf.readUInt16BE(0);
  const rec = 2 + keyLen;
  return keyLen > 0 && buf.length >= rec + HEADER && buf[rec] === RECORD_FORMAT && buf.length >= rec + HEADER + (buf[rec + NODE_LEN] ?? 0);
}

/** Whether the record (at `o` of `buf`) is a tombstone. */
export function isTombstone(buf: Buffer, o = 0): boolean {
  return ((buf[o + 1] ?? 0) & FLAG_TOMBSTONE) !== 0;
}

/** The record's clock reading, without decoding the rest. */
export function recordVersion(buf: Buffer): Hlc {
  return { wall: buf.readUIntBE(2, 6), counter: buf.readUInt16BE(8) };
}

/** Where the 16-byte Merkle item hash sits in a record. */
export const ITEM_OFFSET = ITEM;

/** The record's Merkle item hash as a latin1 string. */
export function recordItem(buf: Buffer): string {
  return buf.toString('latin1', ITEM, ITEM + 16);
}

/** The top 32 bits of the key's keyed hash (they choose its segment). */
export function recordKeyHashHi(buf: Buffer): number {
  return buf.readUInt32BE(KEY_HASH);
}

/** The key's stored keyed hash (of the record at `o` of `buf`). */
export function recordKeyHash(buf: Buffer, o = 0): KeyHash {
  return { hi: buf.readUInt32BE(o + KEY_HASH), lo: buf.readUInt32BE(o + KEY_HASH + 4) };
}

/** The 8 bytes of the key's keyed hash, as stored (a view into `buf`). */
export function recordKeyHashBytes(buf: Buffer): Buffer {
  return buf.subarray(KEY_HASH, KEY_HASH + 8);
}

/**
 * Compares `v` with the record's version in last-writer-wins order (hlc.ts, compareVersion) without
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

/** The record's full version: clock reading and writer's node id. */
export function recordVersionOf(buf: Buffer): Version {
  return { ...recordVersion(buf), node: recordNode(buf) };
}

/** The id of the node that wrote the record. */
export function recordNode(buf: Buffer): string {
  return buf.toString('utf8', HEADER, HEADER + (buf[NODE_LEN] ?? 0));
}

/** The value bytes, as a view into `buf` (no copy). */
export function recordValue(buf: Buffer, end = buf.length): Buffer {
  return buf.subarray(HEADER + (buf[NODE_LEN] ?? 0), end);
}

export function decodeRecord(buf: Buffer): StoredRecord {
  if (buf.length < HEADER || buf[0] !== RECORD_FORMAT) {
    throw new RangeError(`unknown record format ${buf[0] ?? 'empty'}`);
  }
  const nodeLen = buf[NODE_LEN] ?? 0;
  return {
    tombstone: isTombstone(buf),
    ...recordVersion(buf),
    item: recordItem(buf),
    keyHash: recordKeyHash(buf),
    node: recordNode(buf),
    value: Buffer.from(buf.subarray(HEADER + nodeLen)),
  };
}

/** Reads a format-1 record (see the layout above), for the upgrade to format 2. */
export function decodeFormat1(buf: Buffer): Omit<StoredRecord, 'item' | 'keyHash'> {
  if (buf.length < 11 || buf[0] !== 1) throw new RangeError('not a format-1 record');
  const nodeLen = buf[10] as number;
  return {
    tombstone: isTombstone(buf),
    ...recordVersion(buf),
    node: buf.toString('utf8', 11, 11 + nodeLen),
    value: Buffer.from(buf.subarray(11 + nodeLen)),
  };
}
