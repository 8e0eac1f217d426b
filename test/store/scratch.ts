import { open } from 'lmdb';
import { TreeHasher } from '../../src/merkle/hash.js';
import { MerkleTree } from '../../src/merkle/tree.js';
import { decodeRecord } from '../../src/store/record.js';

/** The Merkle root recomputed from nothing but the stored keys and values: every item hash rehashed. */
export function rootFromScratch(path: string, bits = 16): string {
  const env = open<Buffer, Buffer>({ path, keyEncoding: 'binary', encoding: 'binary', readOnly: true });
  const records = env.openDB<Buffer, Buffer>('records', { keyEncoding: 'binary', encoding: 'binary' });
  const hasher = new TreeHasher('');
  const tree = new MerkleTree(bits);
  for (const { key, value } of records.getRange({})) {
    const r = decodeRecord(Buffer.from(value.subarray(0, value.length)));
    const item = hasher.item(key, r, r.flags, r.body);
    tree.updateBytes(tree.segmentOf(hasher.keyHash(key).hi), Buffer.from(item, 'latin1'), 0, 1);
  }
  void env.close();
  return tree.root().toString('hex');
}
