/** What exchanges with one peer came to (metrics). */
export interface PeerTotals {
  syncs: number;
  failures: number;
  keysSent: number;
  keysReceived: number;
  bytesSent: number;
  bytesReceived: number;
  /** Seconds spent in exchanges, failed ones included. */
  seconds: number;
}

/** Peers tracked one by one; SYNC with further addresses counts under OTHER_PEERS. */
const MAX_TRACKED_PEERS = 64;
const OTHER_PEERS = 'other';

/**
 * Per peer (`host:port`): what its exchanges came to. SYNC can name any address, so the table is
 * bounded: beyond MAX_TRACKED_PEERS addresses, the rest count together under 'other'.
 */
export class PeerTotalsTable {
  private readonly totals = new Map<string, PeerTotals>();

  get all(): ReadonlyMap<string, Readonly<PeerTotals>> {
    return this.totals;
  }

  /** The totals of `where`, made at its first exchange. */
  of(where: string): PeerTotals {
    let t = this.totals.get(where) ?? (this.totals.size < MAX_TRACKED_PEERS ? undefined : this.totals.get(OTHER_PEERS));
    if (t === undefined) {
      t = { syncs: 0, failures: 0, keysSent: 0, keysReceived: 0, bytesSent: 0, bytesReceived: 0, seconds: 0 };
      this.totals.set(this.totals.size < MAX_TRACKED_PEERS ? where : OTHER_PEERS, t);
    }
    return t;
  }
}
