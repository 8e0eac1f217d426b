import { ProtocolError } from '../errors.js';
import type { Version } from '../hlc.js';
import type { Limits } from '../rules.js';
import type { StoredEntry } from '../store/index.js';
import { NodeTable, readNodeTable, readRecord, Reader, writeRecord, writeStoredRecord, Writer, type WireRecord } from './wire.js';

/*
 * AE.DIFF, the message of a descent (docs/ARCHITECTURE.md, "Anti-entropy"): each side in turn sends
 * its view of the tree nodes that still differ, and the other compares it with its own and answers
 * with its view one level further down, so that every message, not every round trip, goes a level
 * deeper (the pattern of range-based set reconciliation, Meyer's negentropy). The initiator's request
 * line is `AE.DIFF <offset> <list max> <width> <base64 payload>` (width: of the windows the answer
 * sends), the answer a BIN frame; both payloads are
 *
 *   the node-id table (wire.ts), then entries to the end, each: u8 kind, u8 depth, u32 index, and
 *   'H': u8 levels (1 or 2), u8 width (1 or 2), then 16^levels windows of the node's descendants'
 *        sums that many levels down (width bytes at the request's offset of each 16-byte sum)
 *   'L': varint count, then per record: key hash (8), epoch wall (6), counter (2), varint node id
 *        index, and a window of its item hash: the sender's records under the node
 *   'P': varint count, key hashes (8 each): records the receiver should fetch (the sender is newer)
 *   'N': varint count, key hashes: records the sender needs (the receiver is newer)
 *   'R': varint count, records as AE.GET sends them (wire.ts): the answering side's newer records,
 *        sent at once rather than named in a 'P' (answers only; up to INLINE_BYTES of them)
 * (depth and index are 0 in P, N and R). A node is (depth, index): the keys whose 32-bit key-hash
 * prefix starts with the `4 * depth` bits of `index`.
 */

/**
 * Bytes of each sum sent while descending, in a later pass, and of each listed record's item hash. A
 * window that matches although the sums differ (2^-16 per differing node) only hides that node for
 * this pass: the root compare that ends it is at full strength, and the next pass looks through
 * another window.
 */
export const WINDOW = 2;

/**
 * The first request of a descent's first pass, and the steps of that pass where many nodes differ
 * (exchange.ts, DENSE_NODES), take one byte of each sum: a node hidden by one (1 in 256 of the
 * differing ones) waits for the next pass, which takes two and has only those left to find. That
 * halves what the windows cost where many nodes differ, and one difference costs 1.2 kB in all, not 1.6.
 */
export const FIRST_WINDOW = 1;

/** Records an answer carries itself ('R') before it names the rest for AE.GET ('P'): about this many bytes. */
export const INLINE_BYTES = 1024 * 1024;
/** Deepest tree node: every bit of a key hash's upper 32 has chosen a branch. */
export const MAX_DEPTH = 8;
/** Entries one request may hold; records one listing or key-hash list may hold. */
export const MAX_ENTRIES = 1024;
export const MAX_LISTED = 65_536;

export const KIND = { hashes: 0x48, list: 0x4c, pull: 0x50, need: 0x4e, records: 0x52 } as const;

/** A record as a listing names it: its key hash, epoch, and a window of its item hash. */
export interface ListedEntry {
  readonly keyHash: Buffer;
  readonly version: Version;
  readonly item: Buffer;
}

export type DiffEntry =
  | { readonly kind: 'hashes'; readonly depth: number; readonly index: number; readonly levels: number; readonly width: number; readonly windows: Buffer }
  | { readonly kind: 'list'; readonly depth: number; readonly index: number; readonly entries: readonly ListedEntry[] }
  | { readonly kind: 'pull'; readonly keyHashes: readonly Buffer[] }
  | { readonly kind: 'need'; readonly keyHashes: readonly Buffer[] }
  | { readonly kind: 'records'; readonly records: readonly WireRecord[] };

/** What `encodeDiff` takes: entries, or records as the store holds them (an answer's, sent as they are). */
export type OutgoingEntry = DiffEntry | { readonly kind: 'records'; readonly records: readonly StoredEntry[] };

/** Encodes entries as a payload (the request's base64 word, or the reply's frame). */
export function encodeDiff(entries: readonly OutgoingEntry[]): Buffer {
  const body = new Writer();
  const table = new NodeTable();
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as OutgoingEntry;
    body.u8(KIND[e.kind]);
    if (e.kind === 'records') {
      body.u8(0);
      body.u32(0);
      body.varint(e.records.length);
      for (const r of e.records) {
        if ('rec' in r) writeStoredRecord(body, r.key, r.rec);
        else writeRecord(body, r);
      }
      continue;
    }
    if (e.kind === 'pull' || e.kind === 'need') {
      body.u8(0);
      body.u32(0);
      body.varint(e.keyHashes.length);
      for (const kh of e.keyHashes) body.bytes(kh);
      continue;
    }
    body.u8(e.depth);
    body.u32(e.index);
    if (e.kind === 'hashes') {
      body.u8(e.levels);
      body.u8(e.width);
      body.bytes(e.windows);
      continue;
    }
    // Listings of one depth that follow each other in index order share one entry.
    const run = [e];
    for (let next = entries[i + 1]; next?.kind === 'list' && next.depth === e.depth && next.index > (run[run.length - 1] as typeof e).index; next = entries[i + 1]) {
      run.push(next);
      i++;
    }
    writeListings(body, table, run);
  }
  const out = new Writer();
  table.write(out);
  out.bytes(body.result());
  return out.result();
}

/**
 * Entries an answer may hold (each of a request's nodes has at most 256 descendants two levels down),
 * and the records its listings and key-hash lists may name in all: a peer's frame cannot make this
 * node build more.
 */
export const MAX_ANSWER_ENTRIES = 256 * MAX_ENTRIES + 3;
export const MAX_NAMED = 1 << 20;

/**
 * Decodes a payload from a peer (nothing trusted: every field is checked). Records ('R') are read
 * only with `limits` (an answer); a request that carries them is refused. At most `maxEntries`
 * entries, and MAX_NAMED records named.
 */
export function decodeDiff(payload: Buffer, limits?: Limits, maxEntries = MAX_ANSWER_ENTRIES): DiffEntry[] {
  const r = new Reader(payload);
  const ids = readNodeTable(r);
  const out: DiffEntry[] = [];
  const budget = { entries: maxEntries, named: MAX_NAMED };
  while (!r.done) {
    const kind = r.u8();
    const depth = r.u8();
    const index = r.u32();
    if (depth > MAX_DEPTH || index >= 16 ** depth) throw new ProtocolError('AE.DIFF names no such tree node');
    if (kind === KIND.hashes) {
      const levels = r.u8();
      if (levels < 1 || levels > 2 || depth + levels > MAX_DEPTH) throw new ProtocolError('AE.DIFF hashes entry of a wrong depth');
      const width = r.u8();
      if (width < 1 || width > WINDOW) throw new ProtocolError('AE.DIFF hashes entry of a wrong window width');
      spend(budget, 1, 0);
      out.push({ kind: 'hashes', depth, index, levels, width, windows: r.bytes(16 ** levels * width) });
    } else if (kind === KIND.list) {
      readListings(r, ids, depth, index, out, budget);
    } else if (kind === KIND.records && limits !== undefined) {
      const n = listLength(r);
      spend(budget, 1, n);
      const records: WireRecord[] = [];
      for (let i = 0; i < n; i++) records.push(readRecord(r, limits));
      out.push({ kind: 'records', records });
    } else if (kind === KIND.records) {
      throw new ProtocolError('AE.DIFF requests carry hashes and listings only');
    } else if (kind === KIND.pull || kind === KIND.need) {
      const n = listLength(r);
      spend(budget, 1, n);
      const keyHashes: Buffer[] = [];
      for (let i = 0; i < n; i++) keyHashes.push(r.bytes(8));
      out.push({ kind: kind === KIND.pull ? 'pull' : 'need', keyHashes });
    } else {
      throw new ProtocolError('malformed AE.DIFF entry');
    }
  }
  return out;
}

/**
 * Listings of consecutive nodes of one depth (after the entry's kind, depth and first index): u48 the
 * latest epoch wall among them, varint node count, then per node: varint gap to it from the node
 * before (index - previous - 1; none for the first), varint record count, and per record the key hash
 * without the bytes the node's index gives (8 - floor(depth / 2) bytes), varint the latest wall minus
 * its wall, varint its counter, varint its node id index, and its item window.
 */
function writeListings(w: Writer, table: NodeTable, run: readonly Extract<DiffEntry, { kind: 'list' }>[]): void {
  const first = run[0] as (typeof run)[number];
  const skip = first.depth >> 1;
  let latest = 0;
  for (const n of run) for (const l of n.entries) latest = Math.max(latest, l.version.wall);
  w.u48(latest);
  w.varint(run.length);
  let previous = first.index;
  for (const n of run) {
    if (n !== first) w.varint(n.index - previous - 1);
    previous = n.index;
    w.varint(n.entries.length);
    for (const l of n.entries) {
      w.bytes(l.keyHash.subarray(skip));
      w.varint(latest - l.version.wall);
      w.varint(l.version.counter);
      w.varint(table.index(l.version.node));
      w.bytes(l.item);
    }
  }
}

function readListings(r: Reader, ids: readonly string[], depth: number, index: number, out: DiffEntry[], budget: Budget): void {
  const skip = depth >> 1;
  const shift = 32 - 4 * depth;
  const latest = r.u48();
  const nodes = r.varint();
  if (nodes < 1 || nodes > 16 ** depth - index) throw new ProtocolError('AE.DIFF lists more nodes than its depth has');
  for (let k = 0; k < nodes; k++) {
    if (k > 0) index += r.varint() + 1;
    if (index >= 16 ** depth) throw new ProtocolError('AE.DIFF names no such tree node');
    const prefix = Buffer.allocUnsafe(4);
    prefix.writeUInt32BE(depth === 0 ? 0 : index * 2 ** shift);
    const n = listLength(r);
    spend(budget, 1, n);
    const entries: ListedEntry[] = [];
    for (let i = 0; i < n; i++) {
      const keyHash = Buffer.concat([prefix.subarray(0, skip), r.bytes(8 - skip)]);
      if (depth > 0 && keyHash.readUInt32BE(0) >>> shift !== index) throw new ProtocolError('AE.DIFF lists a record under the wrong node');
      const gap = r.wideVarint();
      if (gap > latest) throw new ProtocolError('AE.DIFF lists an epoch before 1970');
      const counter = r.varint();
      if (counter > 0xffff) throw new ProtocolError('AE.DIFF lists an epoch counter over 65535');
      const node = ids[r.varint()];
      if (node === undefined) throw new ProtocolError('anti-entropy reply names an unknown node id');
      entries.push({ keyHash, version: { wall: latest - gap, counter, node }, item: r.bytes(WINDOW) });
    }
    out.push({ kind: 'list', depth, index, entries });
  }
}

/** What a payload may still make this node build while it is decoded. */
interface Budget {
  entries: number;
  named: number;
}

function spend(budget: Budget, entries: number, named: number): void {
  budget.entries -= entries;
  budget.named -= named;
  if (budget.entries < 0) throw new ProtocolError(`AE.DIFF holds too many entries`);
  if (budget.named < 0) throw new ProtocolError(`AE.DIFF names over ${MAX_NAMED} records`);
}

function listLength(r: Reader): number {
  const n = r.varint();
  if (n > MAX_LISTED) throw new ProtocolError(`AE.DIFF lists over ${MAX_LISTED} records`);
  return n;
}

/** The key-hash range of tree node (`depth`, `index`), in units of the top 32 bits. */
export function nodeRange(depth: number, index: number): { from: number; to: number } {
  const width = 2 ** (32 - 4 * depth);
  return { from: index * width, to: (index + 1) * width };
}
