import { ErrorCode, ProtocolError } from '../errors.js';

/*
 * `[storage] memory_limit_mb` (issue #26): a bound on the data a node holds, counted as the bytes of its
 * live records (key and stored record, set members included; tombstones and expired records are not
 * data), writes not yet in LMDB included. They are counted once: counting the write path's copy of
 * them again made the room depend on how far LMDB was behind (a burst of writes was refused at half
 * the limit, and the same writes fitted once LMDB had them). A client's
 * write that would grow that past the limit is refused and changes nothing; a write that does not grow
 * it (a delete, a smaller value) always goes through. Writes from other nodes (replication, anti-entropy)
 * are never refused: another node acknowledged them, and refusing them would leave the replicas
 * different for good. They may take the node past its limit, which it then reports.
 */

const MIB = 1024 * 1024;

/** A client write refused by the limit: `ERROR Storage full ...` (memcached: SERVER_ERROR out of memory). */
export class StorageFullError extends ProtocolError {
  constructor(used: number, limit: number) {
    super(`Storage full: ${used} of ${limit} bytes used (storage.memory_limit_mb); deletes and smaller values are still accepted`, {
      code: ErrorCode.StorageFull,
    });
    this.name = 'StorageFullError';
  }
}

/** The limit and what it has refused; the store reads the data it counts through `measure`. */
export class Capacity {
  /** Bytes; 0: no limit. */
  private limit: number;
  /** Client writes refused since start. */
  refused = 0;
  private measure: () => number = () => 0;

  constructor(limitMb = 0) {
    this.limit = limitMb * MIB;
  }

  /** `[storage] memory_limit_mb`, at start and on a reload. */
  setLimitMb(mb: number): void {
    this.limit = mb * MIB;
  }

  get limitBytes(): number {
    return this.limit;
  }

  /** The data counted now (see above). */
  get usedBytes(): number {
    return this.measure();
  }

  /** Whether the data counted is past the limit (writes from other nodes can take it there). */
  get over(): boolean {
    return this.limit > 0 && this.measure() > this.limit;
  }

  /** Set by the store that counts: what the data takes now. */
  measureWith(measure: () => number): void {
    this.measure = measure;
  }

  /** Throws StorageFullError if a client write growing the data by `growth` bytes would pass the limit. */
  admit(growth: number): void {
    if (this.limit === 0 || growth <= 0) return;
    const used = this.measure();
    if (used + growth <= this.limit) return;
    this.refused++;
    throw new StorageFullError(used, this.limit);
  }
}
