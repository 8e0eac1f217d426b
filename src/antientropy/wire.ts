import { ProtocolError } from '../errors.js';
import type { Version } from '../hlc.js';
import { checkKeyKind, checkRecordKey, encodeState, parseBody, decodeTransfer, encodeTransfer, type RecordState, stateOf, transferOf } from '../store/index.js';
import { checkEpochNode, type Limits } from '../rules.js';

/*
 * What anti-entropy puts on the wire (docs/ARCHITECTURE.md, "Anti-entropy"). Replies that carry many
 * hashes or records are binary, framed as `BIN <length>\r\n<bytes>\r\n`; requests are lines.
 *
 * A node-id table, ahead of entries that refer to node ids by index: u16 count, then (u8 length,
 * UTF-8 bytes) each. AE.DIFF's payloads are diff.ts, AE.RANGE's and AE.SCAN's stream.ts.
 *
 * AE.GET reply: u32 count of the requested key hashes it covers (from the first), then per record:
 * u16 key length, key, u8 flags (store/record.ts), epoch wall (6), counter (2), u8 node id length,
 * node id, u32 body length, body (the record's expiry register and payload, as stored).
 */

/** Largest node and key-hash counts one request may name. */
export const MAX_BATCH = 1024;
/** A reply grows past this only by its last record. */
export const MAX_REPLY_BYTES = 4 * 1024 * 1024;

/** A record as anti-entropy moves it: its state (store/state.ts), merged into the receiver's. */
export interface WireRecord {
  readonly key: Buffer;
  readonly state: RecordState;
}

/** Builds a binary reply; grows as needed. */
export class Writer {
  private buf = Buffer.allocUnsafe(4096);
  length = 0;

  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(bigger, 0, 0, this.length);
    this.buf = bigger;
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.length++] = v;
  }

  u16(v: number): void {
    this.ensure(2);
    this.length = this.buf.writeUInt16BE(v, this.length);
  }

  u32(v: number): void {
    this.ensure(4);
    this.length = this.buf.writeUInt32BE(v, this.length);
  }

  u48(v: number): void {
    this.ensure(6);
    this.length = this.buf.writeUIntBE(v, this.length, 6);
  }

  bytes(b: Buffer): void {
    this.ensure(b.length);
    this.length += b.copy(this.buf, this.length);
  }

  /** A string of byte-valued characters (an item hash as the store keeps it). */
  latin1(s: string): void {
    this.ensure(s.length);
    this.length += this.buf.write(s, this.length, 'latin1');
  }

  /** An unsigned integer below 2^53 in LEB128: 7 bits a byte, low first. */
  varint(v: number): void {
    this.ensure(8);
    while (v >= 0x80) {
      this.buf[this.length++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.length++] = v;
  }

  /** Overwrites a u32 written earlier at `at`. */
  patchU32(at: number, v: number): void {
    this.buf.writeUInt32BE(v, at);
  }

  result(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

/** Reads a binary reply; any read past the end is a protocol error (a peer's reply is not trusted). */
export class Reader {
  private pos = 0;

  constructor(private readonly buf: Buffer) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  private take(n: number): number {
    if (this.pos + n > this.buf.length) throw new ProtocolError('truncated anti-entropy reply');
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u8(): number {
    return this.buf[this.take(1)] as number;
  }

  u16(): number {
    return this.buf.readUInt16BE(this.take(2));
  }

  u32(): number {
    return this.buf.readUInt32BE(this.take(4));
  }

  u48(): number {
    return this.buf.readUIntBE(this.take(6), 6);
  }

  /** A LEB128 unsigned integer below 2^32 (at most 5 bytes). */
  varint(): number {
    return this.leb128(2 ** 32);
  }

  /** A LEB128 unsigned integer below 2^49 (at most 7 bytes): an epoch wall, or a difference of two. */
  wideVarint(): number {
    return this.leb128(2 ** 49);
  }

  private leb128(below: number): number {
    let v = 0;
    for (let scale = 1; scale < below; scale *= 0x80) {
      const b = this.u8();
      v += (b & 0x7f) * scale;
      if (b < 0x80) {
        if (v >= below) break;
        return v;
      }
    }
    throw new ProtocolError('malformed number in anti-entropy reply');
  }

  bytes(n: number): Buffer {
    const at = this.take(n);
    return this.buf.subarray(at, at + n);
  }

  /** A record's transfer frame (store/record.ts); its body copied out of the reply. */
  record(sized: boolean): { flags: number; epoch: Version; body: Buffer } {
    let frame: ReturnType<typeof decodeTransfer>;
    try {
      frame = decodeTransfer(this.buf, this.pos, sized);
    } catch {
      throw new ProtocolError('truncated anti-entropy reply');
    }
    this.pos = frame.end;
    const { flags, wall, counter, node, body } = frame.fields;
    return { flags, epoch: { wall, counter, node: checkEpochNode(node) }, body: Buffer.from(body) };
  }

  /** What is left (a view). */
  rest(): Buffer {
    return this.bytes(this.buf.length - this.pos);
  }
}

/** Interns node ids into a table written ahead of the entries that refer to them. */
export class NodeTable {
  private readonly ids = new Map<string, number>();

  index(node: string): number {
    let i = this.ids.get(node);
    if (i === undefined) {
      if (this.ids.size === 0xffff) throw new ProtocolError('too many distinct node ids in one reply');
      i = this.ids.size;
      this.ids.set(node, i);
    }
    return i;
  }

  write(w: Writer): void {
    w.u16(this.ids.size);
    for (const id of this.ids.keys()) {
      const b = Buffer.from(id, 'utf8');
      w.u8(b.length);
      w.bytes(b);
    }
  }
}

export function readNodeTable(r: Reader): string[] {
  const n = r.u16();
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push(checkEpochNode(r.bytes(r.u8())));
  return ids;
}

/** A stored record as anti-entropy sends it. The payload is a view into `rec`. */
export function wireRecordOf(key: Buffer, rec: Buffer): WireRecord {
  return { key, state: stateOf(rec) };
}

/** Writes a stored record as AE.GET sends it: the key, then the record's transfer frame (store/record.ts). */
export function writeStoredRecord(w: Writer, key: Buffer, rec: Buffer): void {
  w.u16(key.length);
  w.bytes(key);
  w.bytes(transferOf(rec, true));
}

export function writeRecord(w: Writer, rec: WireRecord): void {
  const { flags, body } = encodeState(rec.state);
  w.u16(rec.key.length);
  w.bytes(rec.key);
  w.bytes(encodeTransfer(flags, rec.state.epoch, body, true));
}

/**
 * Decodes an AE.GET reply, checking every key and value as if a client had sent them. `served`: how
 * many of the requested key hashes (from the first) the reply covers; a reply cut at the size cap
 * covers fewer than were asked.
 */
export function decodeRecords(payload: Buffer, limits: Limits): { served: number; records: WireRecord[] } {
  const r = new Reader(payload);
  const served = r.u32();
  const out: WireRecord[] = [];
  while (!r.done) out.push(readRecord(r, limits));
  return { served, records: out };
}

/** Reads one record as `writeStoredRecord` and `writeRecord` write it, checked as a client's write would be. */
export function readRecord(r: Reader, limits: Limits): WireRecord {
  const key = checkRecordKey(r.bytes(r.u16()), limits);
  const { flags, epoch, body } = r.record(true);
  const state = parseBody(epoch, flags, body, limits);
  checkKeyKind(key, state);
  return { key: Buffer.from(key), state };
}

