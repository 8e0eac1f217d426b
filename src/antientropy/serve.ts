import { ProtocolError } from '../errors.js';
import { recordKeyHashBytes, recordVersionOf, type Store } from '../store/index.js';
import { childSums } from './nodes.js';
import { rootReplyLine } from './requests.js';
import { HASH_WINDOW, itemWindow, KIND_HASHES, KIND_LIST, MAX_DEPTH, MAX_REPLY_BYTES, NodeTable, writeStoredRecord, Writer } from './wire.js';

/**
 * The answering side of anti-entropy: what the internal AE.* commands reply (commands/antientropy.ts).
 * A node below the in-memory tree is listed rather than split when it holds at most this many records:
 * a listing entry (18 bytes) costs less than a level of 16 hash windows (64 bytes) once a node is this small.
 */
export const LIST_MAX = 4;

/** AE.ROOT: checks that both sides hash alike, then returns the root and this node's id. */
export function rootReply(store: Store, nodeId: string, fingerprint: string, bits: number): string {
  if (fingerprint !== store.secretFingerprint) {
    throw new ProtocolError('cluster_secret differs from this node: the trees cannot be compared');
  }
  if (bits !== store.merkle.bits) {
    throw new ProtocolError(`segment_bits differ: this node uses ${store.merkle.bits}`);
  }
  return rootReplyLine(store.rootHash().toString('hex'), nodeId);
}

/**
 * AE.NODES: for each node, its children's hash windows, or (when small enough) its records' epochs and
 * item hash windows (a counter changes without a new epoch).
 */
export function nodesReply(store: Store, depth: number, offset: number, indices: number[]): Buffer {
  if (depth < 0 || depth > MAX_DEPTH) throw new ProtocolError(`depth must be 0..${MAX_DEPTH}`);
  if (offset < 0 || offset > 16 - HASH_WINDOW) throw new ProtocolError(`offset must be 0..${16 - HASH_WINDOW}`);
  const body = new Writer();
  const table = new NodeTable();
  for (const index of indices) {
    if (!Number.isInteger(index) || index < 0 || index >= 16 ** depth) throw new ProtocolError('no such tree node');
  }
  const below = depth >= store.merkle.depth ? store.ranges.recordsUnderEach(depth, indices) : undefined;
  for (const [i, index] of indices.entries()) {
    const records = below?.[i];
    if (records !== undefined && (records.length <= LIST_MAX || depth === MAX_DEPTH)) {
      body.u8(KIND_LIST);
      body.u32(records.length);
      for (const { rec } of records) {
        body.bytes(recordKeyHashBytes(rec));
        const v = recordVersionOf(rec);
        body.u48(v.wall);
        body.u16(v.counter);
        body.u16(table.index(v.node));
        body.bytes(itemWindow(rec, offset));
      }
    } else {
      const sums = childSums(store, depth, index, records);
      body.u8(KIND_HASHES);
      for (let c = 0; c < 16; c++) body.bytes(sums.subarray(c * 16 + offset, c * 16 + offset + HASH_WINDOW));
    }
  }
  const out = new Writer();
  table.write(out);
  out.bytes(body.result());
  return out.result();
}

/** AE.GET: the records with these key hashes, up to about MAX_REPLY_BYTES (the caller asks again for the rest). */
export function getReply(store: Store, keyHashes: Buffer[]): Buffer {
  const w = new Writer();
  w.u32(0);
  let served = 0;
  for (const kh of keyHashes) {
    if (w.length >= MAX_REPLY_BYTES) break;
    served++;
    for (const { key, rec } of store.ranges.recordsWithKeyHash(kh)) writeStoredRecord(w, key, rec);
  }
  w.patchU32(0, served);
  return w.result();
}
