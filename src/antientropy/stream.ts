import { ProtocolError } from '../errors.js';
import { expected } from '../expected.js';
import type { Limits } from '../rules.js';
import { recordBody, recordFlags, recordItem, recordKeyHashBytes, recordVersionOf, type CopiedRecords, type Store } from '../store/index.js';
import type { PeerClient } from './peer.js';
import { rangeLine, scanLine } from './requests.js';
import { NodeTable, readNodeTable, Reader, Writer } from './wire.js';

/*
 * Streaming a range of the key-hash order (docs/ARCHITECTURE.md, "Anti-entropy"): where a range is
 * empty on this side (a new or wiped node, or a bootstrap cut short), its records are not reconciled
 * but copied, in key-hash order, in frames of about FRAME_BYTES. The initiator asks for a range with
 * `AE.RANGE <from> <to>`; a reply that stops at the frame size says where the rest resumes, and the
 * initiator asks again from there. It keeps LANES such requests in flight (a range is split in lanes
 * that run side by side), which is the flow control: at most LANES frames are ever on their way or
 * waiting to be applied, whatever the size of the range.
 *
 * AE.RANGE reply (a BIN frame):
 *   u8 0 (the range is done) or 1 (cut; then u16 length and the index key the rest resumes from)
 *   u48: how many records the sender holds in all (the receiver's progress)
 *   the node-id table (wire.ts)
 *   per record, to the end: varint key length, key, u8 flags, epoch wall (6), counter (2),
 *     u16 node id index, varint body length, body (as stored), key hash (8), item hash (16)
 * The hashes travel so that the receiver, which checked the sender's proof of the cluster secret,
 * stores them rather than hashing every key and value again.
 *
 * AE.SCAN <from> answers the same frames, in key order rather than key-hash order: it fills an empty
 * node (copyAll), whose LMDB then takes its records in its own order, which it writes several times
 * faster than scattered keys (each commit copies only the pages it touches).
 */

/** A frame is cut once it holds this many bytes (one record may take it past). */
export const FRAME_BYTES = 1024 * 1024;
/** Requests in flight per streamed range. */
export const LANES = 4;
/** Hash space of a range, in units of a key hash's top 32 bits. */
export const HASH_SPACE = 2 ** 32;

const DONE = 0;
const CUT = 1;

/** A range of the key-hash order: key hashes whose top 32 bits are in [from, to), to at most 2^32. */
export interface HashRange {
  readonly from: number;
  readonly to: number;
}

/** What a stream has moved so far (SYNC's progress, STATS, the progress log). */
export interface StreamProgress {
  /** Records received, and those of them that changed something here. */
  received: number;
  applied: number;
  bytes: number;
  frames: number;
  /** Of the hash space asked for: how much is covered (0..1). */
  done: number;
}

/** The first index key of key hashes starting with `hi`: 8 bytes, `hi` then zeros. */
export function hiKey(hi: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(hi, 0);
  return b;
}

/** AE.RANGE: the records from index key `from` up to key hash `to` (undefined: the end), one frame. */
export function rangeReply(store: Store, from: Buffer, to: Buffer | undefined): Buffer {
  const frame = new FrameWriter(store);
  store.ranges.visitRange(from, to, (indexKey, key, rec) => frame.add(indexKey, key, rec));
  return frame.result();
}

/** AE.SCAN: the records from key `from` (inclusive) in key order, one frame. */
export function scanReply(store: Store, from: Buffer): Buffer {
  const frame = new FrameWriter(store);
  store.visitKeyOrder(from, (key, rec) => frame.add(key, key, rec));
  return frame.result();
}

/** Builds one frame of records; `add` says false once the frame is full (the record is not in it). */
class FrameWriter {
  private readonly body = new Writer();
  private readonly table = new NodeTable();
  private resume: Buffer | undefined;

  constructor(private readonly store: Store) {}

  /** Adds a record unless the frame is full; `at` is where a frame cut before it resumes. */
  add(at: Buffer, key: Buffer, rec: Buffer): boolean {
    const body = this.body;
    if (body.length >= FRAME_BYTES) {
      this.resume = Buffer.from(at);
      return false;
    }
    const version = recordVersionOf(rec);
    const recBody = recordBody(rec);
    body.varint(key.length);
    body.bytes(key);
    body.u8(recordFlags(rec));
    body.u48(version.wall);
    body.u16(version.counter);
    body.u16(this.table.index(version.node));
    body.varint(recBody.length);
    body.bytes(recBody);
    body.bytes(recordKeyHashBytes(rec));
    body.latin1(recordItem(rec));
    return true;
  }

  result(): Buffer {
    const out = new Writer();
    if (this.resume === undefined) {
      out.u8(DONE);
    } else {
      out.u8(CUT);
      out.u16(this.resume.length);
      out.bytes(this.resume);
    }
    // What the whole order holds, for the receiver's progress.
    out.u48(this.store.size + this.store.tombstoneCount);
    this.table.write(out);
    out.bytes(this.body.result());
    return out.result();
  }
}

/** Decodes an AE.RANGE or AE.SCAN reply (from a peer: nothing trusted beyond its framing, checked whole here). */
export function decodeRange(frame: Buffer): { resume: Buffer | undefined; total: number; records: FrameRecords } {
  const cut = (): ProtocolError => new ProtocolError('truncated anti-entropy reply');
  if (frame.length < 1) throw cut();
  const status = frame[0] as number;
  if (status !== DONE && status !== CUT) throw new ProtocolError('malformed AE.RANGE reply');
  let o = 1;
  let resume: Buffer | undefined;
  if (status === CUT) {
    if (frame.length < o + 2) throw cut();
    const n = frame.readUInt16BE(o);
    if (frame.length < o + 2 + n) throw cut();
    resume = frame.subarray(o + 2, o + 2 + n);
    o += 2 + n;
  }
  if (frame.length < o + 8) throw cut();
  const total = frame.readUIntBE(o, 6);
  // The node-id table: its extent found here, its ids read (and checked) by wire.ts.
  const table = o + 6;
  const ids = frame.readUInt16BE(table);
  o = table + 2;
  for (let i = 0; i < ids; i++) {
    if (frame.length < o + 1) throw cut();
    o += 1 + (frame[o] as number);
  }
  if (frame.length < o) throw cut();
  const records = new FrameRecords(frame, o, readNodeTable(new Reader(frame.subarray(table, o))));
  return { resume, total, records };
}

/**
 * The records of a stream frame, read in place (the store's CopiedRecords): `next()` moves to the next
 * one, whose fields are then offsets into the frame and numbers, so that a frame of thousands of
 * records makes no object per record. Made by decodeRange, which walks them once to check the framing
 * and count them, then rewinds.
 */
export class FrameRecords implements CopiedRecords {
  keyStart = 0;
  keyEnd = 0;
  flags = 0;
  wall = 0;
  counter = 0;
  node = '';
  bodyStart = 0;
  bodyEnd = 0;
  keyHashAt = 0;
  itemAt = 0;
  /** How many records the frame holds. */
  readonly length: number;
  private at: number;

  constructor(
    readonly buf: Buffer,
    private readonly start: number,
    private readonly ids: readonly string[],
  ) {
    this.at = start;
    let n = 0;
    while (this.next()) n++;
    this.length = n;
    this.rewind();
  }

  /** Back before the first record. */
  rewind(): void {
    this.at = this.start;
  }

  next(): boolean {
    const buf = this.buf;
    if (this.at >= buf.length) return false;
    const keyLength = this.varint();
    this.keyStart = this.take(keyLength);
    this.keyEnd = this.at;
    // flags (1), epoch wall (6), counter (2), node id index (2)
    const o = this.take(11);
    this.flags = buf[o] as number;
    this.wall = ((buf[o + 1] as number) * 256 + (buf[o + 2] as number)) * 2 ** 32 + buf.readUInt32BE(o + 3);
    this.counter = ((buf[o + 7] as number) << 8) | (buf[o + 8] as number);
    const node = this.ids[((buf[o + 9] as number) << 8) | (buf[o + 10] as number)];
    if (node === undefined) throw new ProtocolError('anti-entropy reply names an unknown node id');
    this.node = node;
    const bodyLength = this.varint();
    this.bodyStart = this.take(bodyLength);
    this.bodyEnd = this.at;
    this.keyHashAt = this.take(8 + 16);
    this.itemAt = this.keyHashAt + 8;
    return true;
  }

  private take(n: number): number {
    const at = this.at;
    if (at + n > this.buf.length) throw new ProtocolError('truncated anti-entropy reply');
    this.at = at + n;
    return at;
  }

  /** A LEB128 unsigned integer of at most 5 bytes, below 2^32 (as wire.ts's Reader reads it). */
  private varint(): number {
    let v = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const b = this.buf[this.take(1)] as number;
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) {
        if (v >= 2 ** 32) break;
        return v;
      }
    }
    throw new ProtocolError('malformed number in anti-entropy reply');
  }
}

/**
 * Copies the peer's records of `ranges` into the store, with at most LANES requests in flight (a range
 * is cut into lanes, which a pool of LANES workers takes in turn); `onFrame` is told after each frame.
 * Every record goes through the store's merge, so a newer version here wins and writes arriving
 * meanwhile (replication) are kept. Resolves once every range is done.
 */
export async function pullRanges(
  store: Store,
  peer: PeerClient,
  ranges: readonly HashRange[],
  limits: Limits,
  onFrame: (p: Readonly<StreamProgress>) => void,
): Promise<StreamProgress> {
  const progress: StreamProgress = { received: 0, applied: 0, bytes: 0, frames: 0, done: 0 };
  const lanes = mergeRanges(ranges).flatMap((r) => splitRange(r, LANES));
  const total = lanes.reduce((n, r) => n + (r.to - r.from), 0);
  // How far each lane has come, in hash space: the progress is their sum.
  const covered = lanes.map(() => 0);
  let sum = 0;
  let taken = 0;
  const worker = async (): Promise<void> => {
    while (taken < lanes.length) {
      const i = taken++;
      const lane = lanes[i] as HashRange;
      await pullLane(store, peer, lane, limits, (frame, at) => {
        sum += at - lane.from - (covered[i] as number);
        covered[i] = at - lane.from;
        progress.received += frame.received;
        progress.applied += frame.applied;
        progress.bytes += frame.bytes;
        progress.frames++;
        progress.done = total === 0 ? 1 : sum / total;
        onFrame(progress);
      });
    }
  };
  const workers: Promise<void>[] = [];
  for (let w = 0; w < Math.min(LANES, lanes.length); w++) workers.push(expected(worker()));
  // A worker that fails leaves the others' replies unread: the exchange ends with the connection.
  await Promise.all(workers);
  return progress;
}

/** The first key of all (no key is empty; set members' internal keys start with 0x00). */
export const FIRST_KEY = Buffer.from([0]);

/**
 * Copies every record the peer holds into the store, in key order (AE.SCAN), from key `from`; the next
 * frame is asked for as soon as a frame arrives, before it is applied, so the peer reads while this
 * node writes. `onFrame` is told after each frame with the key the copy would resume from (undefined
 * once it is done): a copy cut short resumes there.
 */
export async function copyAll(
  store: Store,
  peer: PeerClient,
  from: Buffer,
  limits: Limits,
  onFrame: (p: Readonly<StreamProgress>, resume: Buffer | undefined) => void,
): Promise<StreamProgress> {
  const progress: StreamProgress = { received: 0, applied: 0, bytes: 0, frames: 0, done: 0 };
  let next: Promise<Buffer> | undefined = peer.binary(scanLine(from));
  let at = from;
  while (next !== undefined) {
    const frame = await next;
    const { resume, total, records } = decodeRange(frame);
    if (resume !== undefined && resume.compare(at) <= 0) throw new ProtocolError('AE.SCAN reply resumes before its start');
    next = resume === undefined ? undefined : peer.binary(scanLine(resume));
    const applied = await applyFrame(store, records, limits);
    progress.received += records.length;
    progress.applied += applied;
    progress.bytes += frame.length;
    progress.frames++;
    progress.done = resume === undefined ? 1 : Math.min(0.999, progress.received / Math.max(total, 1));
    onFrame(progress, resume);
    if (resume !== undefined) at = resume;
  }
  return progress;
}

/** Ranges sorted, with those that touch joined into one. */
export function mergeRanges(ranges: readonly HashRange[]): HashRange[] {
  const sorted = [...ranges].sort((a, b) => a.from - b.from);
  const out: { from: number; to: number }[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && r.from <= last.to) last.to = Math.max(last.to, r.to);
    else out.push({ from: r.from, to: r.to });
  }
  return out;
}

/** A range is split into lanes only down to this width (a node of depth 2, 1/256 of the order). */
const MIN_LANE = HASH_SPACE / 256;

/** `range` cut into at most `n` parts of about equal hash space, none narrower than MIN_LANE. */
export function splitRange(range: HashRange, n: number): HashRange[] {
  const width = range.to - range.from;
  const parts = Math.max(1, Math.min(n, Math.floor(width / MIN_LANE)));
  const out: HashRange[] = [];
  for (let p = 0; p < parts; p++) {
    out.push({ from: range.from + Math.floor((width * p) / parts), to: range.from + Math.floor((width * (p + 1)) / parts) });
  }
  return out;
}

/** One lane: asks for a frame, applies it, asks again from where it stopped, until the lane is done. */
async function pullLane(
  store: Store,
  peer: PeerClient,
  lane: HashRange,
  limits: Limits,
  onFrame: (frame: { received: number; applied: number; bytes: number }, at: number) => void,
): Promise<void> {
  const to = lane.to >= HASH_SPACE ? undefined : hiKey(lane.to);
  let from = hiKey(lane.from);
  for (;;) {
    const frame = await peer.binary(rangeLine(from, to));
    const { resume, records } = decodeRange(frame);
    const applied = await applyFrame(store, records, limits);
    if (resume !== undefined && (resume.compare(from) <= 0 || (to !== undefined && resume.compare(to) >= 0))) {
      throw new ProtocolError('AE.RANGE reply resumes outside its range');
    }
    const at = resume === undefined ? lane.to : Math.max(lane.from, resume.readUInt32BE(0));
    onFrame({ received: records.length, applied, bytes: frame.length }, at);
    if (resume === undefined) return;
    from = resume;
  }
}

/**
 * Merges a frame's records in (Store.applyCopied: each checked as a client's write, then merged), then
 * puts them in the log at once, as a client's writes would be at the end of its batch. Resolves with
 * how many changed something, once the write path lets more come (when LMDB falls behind, it makes the
 * stream wait: bounded memory).
 */
async function applyFrame(store: Store, records: FrameRecords, limits: Limits): Promise<number> {
  const { applied, after } = store.applyCopied(records, limits);
  store.flush();
  if (after !== null) await after;
  return applied;
}
