import { createHash, type Hash } from 'node:crypto';
import type { Version } from '../store/hlc.js';

/** Used when `cluster_secret` is empty: fine for one node, and the same on every node that leaves it empty. */
export const DEFAULT_SECRET = 'merkle-kv default cluster secret';

/**
 * Keyed hashes for the Merkle tree: SHA-256 over the cluster secret and the input, truncated (so no
 * length extension). Keying keeps clients, who choose keys, from piling keys into one segment or
 * crafting item hashes that cancel in a sum. The secret's prefix state is hashed once and copied per
 * call: Node's crypto calls cost microseconds each, and a write makes two.
 */
export class TreeHasher {
  private readonly keyBase: Hash;
  private readonly itemBase: Hash;

  constructor(secret: string) {
    const s = Buffer.from(secret === '' ? DEFAULT_SECRET : secret, 'utf8');
    const prefix = (tag: string): Hash => {
      const len = Buffer.allocUnsafe(4);
      len.writeUInt32BE(s.length);
      return createHash('sha256').update(len).update(s).update(tag);
    };
    this.keyBase = prefix('k');
    this.itemBase = prefix('i');
  }

  /** 32 bits of the key's keyed hash; its top `bits` bits are the key's segment. Stored with the record. */
  keyHash(key: Buffer): number {
    return this.keyBase.copy().update(key).digest().readUInt32BE(0);
  }

  /**
   * The record's item hash, 16 bytes, over (key, version, tombstone flag, value). Stored with the
   * record so start-up never rehashes values.
   */
  item(key: Buffer, version: Version, tombstone: boolean, value: Buffer): Buffer {
    const head = Buffer.allocUnsafe(4 + 6 + 2 + 1);
    head.writeUInt32BE(key.length, 0);
    head.writeUIntBE(version.wall, 4, 6);
    head.writeUInt16BE(version.counter, 10);
    head[12] = tombstone ? 1 : 0;
    const nodeLen = Buffer.allocUnsafe(1);
    nodeLen[0] = Buffer.byteLength(version.node);
    // Lengths go before the variable parts, so no two different inputs share a byte string.
    return this.itemBase
      .copy()
      .update(head)
      .update(key)
      .update(nodeLen)
      .update(version.node)
      .update(tombstone ? EMPTY : value)
      .digest()
      .subarray(0, 16);
  }
}

/** The segment of a key hash in a tree of `bits` segment bits. */
export function segmentOf(keyHash: number, bits: number): number {
  return keyHash >>> (32 - bits);
}

const EMPTY = Buffer.alloc(0);
