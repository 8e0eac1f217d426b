import { ProtocolError } from '../errors.js';
import type { Version } from '../hlc.js';
import { NodeTable, readNodeTable, Reader, Writer } from './wire.js';

/*
 * AE.DIFF, the message of a descent (docs/ARCHITECTURE.md, "Anti-entropy"): each side in turn sends
 * its view of the tree nodes that still differ, and the other compares it with its own and answers
 * with its view one level further down, so that every message, not every round trip, goes a level
 * deeper (the pattern of range-based set reconciliation, Meyer's negentropy). The initiator's request
 * line is `AE.DIFF <offset> <list max> <base64 payload>`, the answer a BIN frame; both payloads are
 *
 *   the node-id table (wire.ts), then entries to the end, each: u8 kind, u8 depth, u32 index, and
 *   'H': u8 levels (1 or 2), u8 width (1 or 2), then 16^levels windows of the node's descendants'
 *        sums that many levels down (width bytes at the request's offset of each 16-byte sum)
 *   'L': varint count, then per record: key hash (8), epoch wall (6), counter (2), varint node id
 *        index, and a window of its item hash: the sender's records under the node
 *   'P': varint count, key hashes (8 each): records the receiver should fetch (the sender is newer)
 *   'N': varint count, key hashes: records the sender needs (the receiver is newer)
 * (depth and index are 0 in P and N). A node is (depth, index): the keys whose 32-bit key-hash
 * prefix starts with the `4 * depth` bits of `index`.
 */

/**
 * Bytes of each sum sent while descending. A window that matches although the sums differ (2^-16 per
 * differing node) only hides that node for this pass: the root compare that ends it is at full
 * strength, and the next pass looks through another window.
 */
export const WINDOW = 2;

/**
 * The first request of a descent's first pass, 256 sums, takes one byte of each: a node hidden by one
 * (1 in 256 of the differing ones) waits for the next pass, whose first request takes two. One
 * difference among a million keys then costs 1.3 kB in all rather than 1.6.
 */
export const FIRST_WINDOW = 1;
/** Deepest tree node: every bit of a key hash's upper 32 has chosen a branch. */
export const MAX_DEPTH = 8;
/** Entries one request may hold; records one listing or key-hash list may hold. */
export const MAX_ENTRIES = 1024;
export const MAX_LISTED = 65_536;

export const KIND = { hashes: 0x48, list: 0x4c, pull: 0x50, need: 0x4e } as const;

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
  | { readonly kind: 'need'; readonly keyHashes: readonly Buffer[] };

/** Encodes entries as a payload (the request's base64 word, or the reply's frame). */
export function encodeDiff(entries: readonly DiffEntry[]): Buffer {
  const body = new Writer();
  const table = new NodeTable();
  for (const e of entries) {
    body.u8(KIND[e.kind]);
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
    body.varint(e.entries.length);
    for (const l of e.entries) {
      body.bytes(l.keyHash);
      body.u48(l.version.wall);
      body.u16(l.version.counter);
      body.varint(table.index(l.version.node));
      body.bytes(l.item);
    }
  }
  const out = new Writer();
  table.write(out);
  out.bytes(body.result());
  return out.result();
}

/** Decodes a payload from a peer (nothing trusted: every field is checked). */
export function decodeDiff(payload: Buffer): DiffEntry[] {
  const r = new Reader(payload);
  const ids = readNodeTable(r);
  const out: DiffEntry[] = [];
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
      out.push({ kind: 'hashes', depth, index, levels, width, windows: r.bytes(16 ** levels * width) });
    } else if (kind === KIND.list) {
      const n = listLength(r);
      const entries: ListedEntry[] = [];
      for (let i = 0; i < n; i++) {
        const keyHash = r.bytes(8);
        const wall = r.u48();
        const counter = r.u16();
        const node = ids[r.varint()];
        if (node === undefined) throw new ProtocolError('anti-entropy reply names an unknown node id');
        entries.push({ keyHash, version: { wall, counter, node }, item: r.bytes(WINDOW) });
      }
      out.push({ kind: 'list', depth, index, entries });
    } else if (kind === KIND.pull || kind === KIND.need) {
      const n = listLength(r);
      const keyHashes: Buffer[] = [];
      for (let i = 0; i < n; i++) keyHashes.push(r.bytes(8));
      out.push({ kind: kind === KIND.pull ? 'pull' : 'need', keyHashes });
    } else {
      throw new ProtocolError('malformed AE.DIFF entry');
    }
  }
  return out;
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
