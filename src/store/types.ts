import type { Logger } from 'pino';
import type { Capacity } from './capacity.js';
import type { LogMode } from './wal.js';
import type { Version } from '../hlc.js';
import type { Ack } from './writepath.js';

export interface StoreOptions {
  readonly path: string;
  readonly nodeId: string;
  readonly maxClockSkewMs: number;
  readonly tombstoneGraceSeconds: number;
  readonly logger: Logger;
  /** Keys the Merkle hashes; the same on every node of a cluster ('' for the built-in default). */
  readonly clusterSecret?: string;
  /** Segment bits of the Merkle tree (default 16). */
  readonly treeBits?: number;
  /**
   * `[storage] fsync` (default "periodic") and `fsync_period_ms` (default 100); "none" (a cache node,
   * cache.ts) syncs neither the log nor LMDB, for a directory that no start-up reads again.
   */
  readonly fsync?: LogMode;
  readonly fsyncPeriodMs?: number;
  /** The largest value a write may carry (bounds what start-up accepts from the log). */
  readonly maxValueBytes?: number;
  /** `[storage] memory_limit_mb` (capacity.ts); none: no limit. */
  readonly capacity?: Capacity;
}

/** A value read, and what a reply showing it must wait for. */
export interface Read<T> {
  readonly value: T;
  readonly after: Ack;
}

/** What a key holds, as GET sees it: a value (a counter's in decimal), a set, or nothing. */
export type Held = Buffer | 'set' | undefined;

/** The store's figures, for STATS and metrics. */
export interface StoreFigures {
  /** Live keys (tombstones and expired keys excluded), pending writes included. */
  readonly keys: number;
  /** Tombstones and expired records not purged yet. */
  readonly tombstones: number;
  /** Live keys that will expire. */
  readonly expiring: number;
  /** The log's mode: `[storage] fsync`, or "none" on a cache node. */
  readonly fsync: LogMode;
  /** "disk" (the data survives a restart) or "cache" (a cache node: wiped at every start). */
  readonly persistence: 'disk' | 'cache';
  readonly syncLagMs: number;
  readonly syncs: number;
  readonly pendingWrites: number;
  readonly pendingBytes: number;
  readonly lmdbLagMs: number;
  readonly lmdbBatches: number;
  readonly lmdbFailures: number;
  /** The size of LMDB's data file (0 if it cannot be read). */
  readonly lmdbBytes: number;
  /** Remote writes refused because they may bring back a key whose tombstone was purged here. */
  readonly refusedPurged: number;
}

/** What anti-entropy reads of the Merkle tree (DESIGN.md section 6): its shape and node sums. */
export interface MerkleView {
  /** The cluster's segment bits (`[anti_entropy] segment_bits`). */
  readonly bits: number;
  /** The bits of the deepest level this tree keeps: `bits`, or 4 more for a large store (merkle/tree.ts). */
  readonly leafBits: number;
  /** Depth of that level (the root is depth 0): sums below it are summed from records. */
  readonly depth: number;
  /** The 16 children's sums of node (`depth`, `index`), 16 bytes each. */
  children(depth: number, index: number): Buffer;
}


/** How a write came: made here (published once acknowledged) or merged from elsewhere. */
export type Origin = 'local' | 'remote';

/** A write's record, as the store makes it (one options object: see `write`). */
export interface WriteSpec {
  readonly key: Buffer;
  readonly version: Version;
  readonly flags: number;
  readonly body: Buffer;
  readonly origin: Origin;
  /** The key in latin1 and its record as read just before, when the caller has them. */
  readonly k?: string;
  readonly current?: Buffer | undefined;
  /** The record's hashes, when a peer that proved the cluster secret sent them with the record. */
  readonly hashes?: Hashes | undefined;
}

/** A record's item hash (16 bytes, latin1) and its key's hash (8 bytes), as its sender stored them. */
export interface Hashes {
  readonly item: string;
  readonly keyHash: Buffer;
}

/**
 * Records copied from a peer that proved the cluster secret (anti-entropy's streams), read where they
 * lie: `next()` moves to the next record (false after the last), whose fields are then numbers and
 * offsets into `buf`, so a frame of thousands of records makes no object per record. Nothing in them is
 * trusted but the framing: the store checks keys and bodies as it would a client's.
 */
export interface CopiedRecords {
  readonly buf: Buffer;
  next(): boolean;
  readonly keyStart: number;
  readonly keyEnd: number;
  /** The record's flags byte (record.ts). */
  readonly flags: number;
  /** The epoch: clock reading and node id (a checked node id). */
  readonly wall: number;
  readonly counter: number;
  readonly node: string;
  /** The body as stored (record.ts): expiry register, client flags, payload. */
  readonly bodyStart: number;
  readonly bodyEnd: number;
  /** Where the key hash (8 bytes) and the item hash (16 bytes) lie in `buf`, as the sender stored them. */
  readonly keyHashAt: number;
  readonly itemAt: number;
}

/** What applying copied records did: how many changed something, and what a reply about them waits for. */
export interface CopyResult {
  readonly applied: number;
  readonly after: Ack;
}
