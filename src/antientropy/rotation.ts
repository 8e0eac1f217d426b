import { parsePeer } from '../rules.js';
import type { NodeStatus } from '../replication/presence.js';

/*
 * Who anti-entropy exchanges with, and in which turn (DESIGN.md section 6): the peers of `peer_list` and,
 * with `discover_peers`, the nodes the broker reports (replication/presence.ts) at the address each
 * advertises. Every interval a node takes up to `max_concurrent_syncs` of them in turn, so with n peers
 * each is visited about every n/max intervals and the cluster's anti-entropy work grows linearly with its
 * size, not with its square.
 */

export interface PeerState {
  /** `host:port` of its client port: as listed, or as its status advertises it. */
  address: string;
  host: string;
  port: number;
  /** From `peer_list`: kept while listed, at the listed address. Otherwise found on the broker. */
  listed: boolean;
  /** Breaks ties between peers that had no turn yet, so that the nodes of a cluster do not all start with the same ones. */
  readonly rank: number;
  /** Order of its last exchange (0: none yet); the oldest goes first. */
  turn: number;
  /** An exchange wanted as soon as a slot is free (ms since the epoch; 0: none): the peer came back online. */
  soon: number;
  /** Backoff: not taken before this (ms since the epoch). */
  retryAt: number;
  running: boolean;
  failures: number;
  lastSyncAt: number;
  /** The address turned out to be this node: not contacted again (unless a status moves it elsewhere). */
  self: boolean;
  /** The peer's node id, once an exchange or its status has told it. */
  node: string | undefined;
  /** Periodic exchanges skipped because the broker reported the peer offline. */
  skippedOffline: number;
}

function newPeer(address: string, listed: boolean, node?: string): PeerState {
  const { host, port } = parsePeer(address);
  return { address, host, port, listed, rank: Math.random(), turn: 0, soon: 0, retryAt: 0, running: false, failures: 0, lastSyncAt: 0, self: false, node, skippedOffline: 0 };
}

/**
 * Up to `max` of `peers` in turn: the one whose last turn is oldest first, peers that had none before all
 * (by rank). `eligible` is asked of each in that order until `max` are taken (so it may count a peer it
 * passes over); a peer it refuses does not use up a place.
 */
export function chooseInTurn<P extends Pick<PeerState, 'turn' | 'rank'>>(peers: readonly P[], max: number, eligible: (p: P) => boolean): P[] {
  const chosen: P[] = [];
  if (max <= 0) return chosen;
  const order = [...peers].sort((a, b) => a.turn - b.turn || a.rank - b.rank);
  for (const p of order) {
    if (!eligible(p)) continue;
    chosen.push(p);
    if (chosen.length >= max) break;
  }
  return chosen;
}

/** The peers: those listed, and those found on the broker (one per node id, and none at a listed address). */
export class PeerSet {
  private list: PeerState[];

  constructor(listed: readonly string[]) {
    this.list = listed.map((address) => newPeer(address, true));
  }

  get all(): readonly PeerState[] {
    return this.list;
  }

  /** The peer a status is about: the one of its node id, or else the one at its address. */
  find(status: NodeStatus): PeerState | undefined {
    return this.list.find((p) => p.node === status.node) ?? this.list.find((p) => p.address === status.address);
  }

  /**
   * Takes a status in (discovery on): a node that is no peer yet becomes one at the address it
   * advertises, and a found peer follows its address if it moves. Undefined if the address is not
   * `host:port` (the peer, if any, is left as it was).
   */
  track(status: NodeStatus): { readonly peer: PeerState; readonly added: boolean } | undefined {
    const known = this.find(status);
    if (known !== undefined) {
      known.node ??= status.node;
      if (!known.listed && known.address !== status.address && !this.move(known, status.address)) return undefined;
      return { peer: known, added: false };
    }
    let peer: PeerState;
    try {
      peer = newPeer(status.address, false, status.node);
    } catch {
      return undefined;
    }
    this.list.push(peer);
    return { peer, added: true };
  }

  /** A found peer at a new address: a fresh start there (it may no longer be this node, nor unreachable). */
  private move(p: PeerState, address: string): boolean {
    try {
      Object.assign(p, parsePeer(address));
    } catch {
      return false;
    }
    p.address = address;
    p.self = false;
    p.failures = 0;
    p.retryAt = 0;
    return true;
  }

  /** The node's status was cleared on the broker (removed for good): a found peer of it is dropped. */
  forget(node: string): void {
    this.list = this.list.filter((p) => p.listed || p.node !== node);
  }

  /**
   * `peer_list` as it is now (after a config reload): a new address becomes a listed peer (a found peer
   * already at that address stays, listed now, with its turns and history); a listed peer no longer
   * listed is dropped (found again at the next refresh if the broker reports it). Returns the peers added.
   */
  relist(addresses: readonly string[]): PeerState[] {
    const wanted = new Set(addresses);
    const dropped = this.list.filter((p) => p.listed && !wanted.has(p.address));
    // An exchange still running with one of them then merges nothing into the set (merge()).
    for (const p of dropped) p.listed = false;
    this.list = this.list.filter((p) => !dropped.includes(p));
    const added: PeerState[] = [];
    for (const address of wanted) {
      const known = this.list.find((p) => p.address === address);
      if (known !== undefined) {
        known.listed = true;
        continue;
      }
      const peer = newPeer(address, true);
      this.list.push(peer);
      added.push(peer);
    }
    return added;
  }

  /**
   * Re-reads who the peers are: `listed` (`peer_list`) and, with discovery (`statuses` given), every node
   * the broker has reported; without it the found peers are dropped. Returns the peers added.
   */
  refresh(listed: readonly string[], statuses: readonly NodeStatus[] | undefined): PeerState[] {
    const added = this.relist(listed);
    if (statuses === undefined) this.list = this.list.filter((p) => p.listed);
    for (const status of statuses ?? []) {
      const tracked = this.track(status);
      if (tracked?.added === true) added.push(tracked.peer);
    }
    return added;
  }

  /** An exchange told listed peer `p` its node id: a peer found for the same node is the same peer. */
  merge(p: PeerState): void {
    if (p.node === undefined) return;
    this.list = this.list.filter((q) => q === p || q.listed || q.node !== p.node);
  }
}
