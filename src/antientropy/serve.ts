import { ProtocolError } from '../errors.js';
import type { Store } from '../store/index.js';
import { rootReplyLine } from './requests.js';
import { MAX_REPLY_BYTES, writeStoredRecord, Writer } from './wire.js';

/** The answering side of anti-entropy: what the internal AE.* commands reply (commands/antientropy.ts). */

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
