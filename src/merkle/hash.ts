import { createHash, hash } from 'node:crypto';
import type { Version } from '../hlc.js';

/** Used when `cluster_secret` is empty: fine for one node, and the same on every node that leaves it empty. */
export const DEFAULT_SECRET = 'merkle-kv default cluster secret';

/** A key's keyed hash: 64 bits as two unsigned 32-bit halves. The top bits of `hi` pick its segment. */
export interface KeyHash {
  readonly hi: number;
  readonly lo: number;
}

/** Inputs up to this size are hashed in one call from a scratch buffer; larger ones are streamed. */
const SCRATCH_BYTES = 8192;
/** Views of the scratch buffer kept, one per input length (bounded: lengths are up to SCRATCH_BYTES). */
const MAX_VIEWS = 1024;

/**
 * Keyed hashes for the Merkle tree: SHA-256 over (secret, domain tag, input), truncated, so there is no
 * length extension. Keying keeps clients, who choose keys, from piling keys into one segment or crafting
 * item hashes that cancel in a sum.
 *
 * Hashes are computed with one-shot `crypto.hash()` into a latin1 ('binary') string: measured on Node 20, about
 * 1 µs for a small record, where `Hash.copy().update().digest()` took 2.2-2.6 µs (the Hash objects and
 * the Buffer result dominate). A write hashes its record once; a new key also hashes the key.
 */
export class TreeHasher {
  private readonly scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  /** Where the input starts in `scratch`, after the secret's length, the secret and a domain tag. */
  private readonly base: number;
  /** A fingerprint of the secret, so peers find out they were given different secrets. */
  readonly secretFingerprint: string;
  private lastNode = '';
  private lastNodeBytes = Buffer.alloc(0);
  /** Views of `scratch` by length (see digest). */
  private readonly views: (Buffer | undefined)[] = new Array<Buffer | undefined>(SCRATCH_BYTES + 1).fill(undefined);
  private viewCount = 0;

  constructor(secret: string) {
    const s = Buffer.from(secret === '' ? DEFAULT_SECRET : secret, 'utf8');
    if (s.length + 64 > SCRATCH_BYTES / 2) throw new RangeError('cluster_secret is too long');
    this.scratch.writeUInt32BE(s.length, 0);
    s.copy(this.scratch, 4);
    this.base = 4 + s.length + 1;
    this.secretFingerprint = Buffer.from(this.digest('f', 0).slice(0, 8), 'latin1').toString('hex');
  }

  /** The key's 64-bit keyed hash. Stored with the record, so a key is hashed once in its life. */
  keyHash(key: Buffer): KeyHash {
    let h: string;
    if (this.base + key.length <= SCRATCH_BYTES) {
      key.copy(this.scratch, this.base);
      h = this.digest('k', key.length);
    } else {
      h = this.streamed('k', [key]);
    }
    return { hi: word(h, 0), lo: word(h, 4) };
  }

  /**
   * The record's item hash, 16 bytes as a latin1 string, over (key, epoch, flags, body): the body is
   * the canonical encoding of the record's state (store/record.ts, store/state.ts), so replicas holding
   * the same state hash alike. A plain record's body is its value, hashed inside (which is what a
   * separate value hash would give, at one call); its flags are 0 or 1 (tombstone), as in the previous
   * release, whose hashes are therefore unchanged. Stored with the record so start-up never rehashes values.
   */
  item(key: Buffer, version: Version, flags: number, body: Buffer): string {
    const node = this.nodeBytes(version.node);
    const nodeLen = node.length;
    const val = body;
    // Lengths go before the variable parts, so no two different inputs share a byte string.
    const size = 4 + key.length + VERSION_PART + nodeLen + val.length;
    if (this.base + size > SCRATCH_BYTES) {
      const head = Buffer.allocUnsafe(4 + VERSION_PART);
      head.writeUInt32BE(key.length, 0);
      writeVersionPart(head, 4, version, flags, nodeLen);
      return this.streamed('i', [head.subarray(0, 4), key, head.subarray(4), Buffer.from(version.node), val]).slice(0, 16);
    }
    // Byte stores and `set`, not Buffer's write methods (see store/record.ts, writeRecord): every write hashes here.
    const b = this.scratch;
    let o = this.base;
    const keyLen = key.length;
    b[o] = keyLen >>> 24;
    b[o + 1] = keyLen >>> 16;
    b[o + 2] = keyLen >>> 8;
    b[o + 3] = keyLen;
    b.set(key, o + 4);
    o = writeVersionPart(b, o + 4 + keyLen, version, flags, nodeLen);
    b.set(node, o);
    o += nodeLen;
    b.set(val, o);
    o += val.length;
    return this.digest('i', o - this.base).slice(0, 16);
  }

  /** The UTF-8 bytes of a node id: every write names one of a few, so the last is kept. */
  private nodeBytes(node: string): Buffer {
    if (node !== this.lastNode) {
      this.lastNode = node;
      this.lastNodeBytes = Buffer.from(node, 'utf8');
    }
    return this.lastNodeBytes;
  }

  private digest(tag: string, inputLength: number): string {
    this.scratch[this.base - 1] = tag.charCodeAt(0);
    const n = this.base + inputLength;
    // One view of the scratch buffer per input length, kept: a view made per hash cost more than the hashing.
    let view = this.views[n];
    if (view === undefined) {
      view = this.scratch.subarray(0, n);
      if (this.viewCount < MAX_VIEWS) {
        this.views[n] = view;
        this.viewCount++;
      }
    }
    return hash('sha256', view, 'binary');
  }

  private streamed(tag: string, parts: Buffer[]): string {
    this.scratch[this.base - 1] = tag.charCodeAt(0);
    const h = createHash('sha256').update(this.scratch.subarray(0, this.base));
    for (const p of parts) h.update(p);
    return h.digest('binary');
  }
}

const VERSION_PART = 6 + 2 + 1 + 1;

/** Writes wall, counter, flags and node id length at `o`; returns the offset after them. */
function writeVersionPart(b: Buffer, o: number, v: Version, flags: number, nodeLen: number): number {
  const wall = v.wall;
  const high = Math.floor(wall / 2 ** 32);
  b[o] = high >>> 8;
  b[o + 1] = high;
  b[o + 2] = wall >>> 24;
  b[o + 3] = wall >>> 16;
  b[o + 4] = wall >>> 8;
  b[o + 5] = wall;
  b[o + 6] = v.counter >>> 8;
  b[o + 7] = v.counter;
  b[o + 8] = flags;
  b[o + 9] = nodeLen;
  return o + VERSION_PART;
}

/** Big-endian 32-bit word at `i` of a latin1 string. */
function word(s: string, i: number): number {
  return ((s.charCodeAt(i) << 24) | (s.charCodeAt(i + 1) << 16) | (s.charCodeAt(i + 2) << 8) | s.charCodeAt(i + 3)) >>> 0;
}

