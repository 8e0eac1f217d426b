import type { Hlc } from '../hlc.js';
import { checkKeyKind, isMemberKey, setKeyOf } from './members.js';
import { KIND, kindFlags } from './record.js';
import { isDead } from './sets.js';
import { isSimpleState, mergeInto, newestWall, type RecordState } from './state.js';
import type { Hashes, WriteSpec } from './types.js';
import type { Ack } from './writepath.js';

export interface RemoteMergeOptions {
  /** Merges a remote clock reading into ours; returns it as merged (clamped if too far ahead). */
  readonly observe: (remote: Hlc) => Hlc;
  /** The record under a key (latin1 `k`), pending writes first (a view). */
  readonly readAt: (key: Buffer, k: string) => Buffer | undefined;
  /** The record of the set that a member key (latin1) belongs to. */
  readonly headerOf: (k: string) => Buffer | undefined;
  /** Tombstones written before this time (ms) may have been purged here. */
  readonly purgedBefore: () => number;
  /** Writes a merged state (origin 'remote', with the key's record as read for the merge). */
  readonly write: (w: WriteSpec) => Ack;
  /** Told of each state refused because it may bring back a purged key. */
  readonly onRefused: () => void;
}

/**
 * Merges states made elsewhere (replication, repair) into what is stored (state.ts, DESIGN.md section
 * 4): a newer epoch wins (last writer wins on (hlc, node id) for plain values), the same epoch merges
 * (counters by per-node maxima, expiry by its newer register). A state that changes nothing is a
 * no-op, so applying is idempotent and independent of arrival order.
 */
export class RemoteMerge {
  constructor(private readonly opts: RemoteMergeOptions) {}

  /**
   * Merges `state` into the record under `key`; the remote clock reading is merged into ours (and
   * clamped if too far ahead). Returns the write's `Ack`, or undefined when nothing changed. `hashes`:
   * the state's hashes as its sender computed them (see Store.applyRemote).
   */
  apply(key: Buffer, state: RecordState, hashes?: Hashes): Ack | undefined {
    const { observe } = this.opts;
    const hlc = observe(state.epoch);
    // A local EXPIRE after this one must carry a newer version to win within the epoch.
    if (state.expiry !== undefined) observe(state.expiry.version);
    return this.applyObserved(key, state, hlc, hashes);
  }

  /** apply() once the clock has observed the state: `hlc` is its epoch's reading as observed (clamped if too far ahead). */
  applyObserved(key: Buffer, state: RecordState, hlc: Hlc, hashes?: Hashes): Ack | undefined {
    const readAt = this.opts.readAt;
    const clamped = hlc.wall !== state.epoch.wall || hlc.counter !== state.epoch.counter;
    const incoming = clamped ? { ...state, epoch: { wall: hlc.wall, counter: hlc.counter, node: state.epoch.node } } : state;
    const k = key.toString('latin1');
    const member = isMemberKey(key);
    checkKeyKind(key, state);
    // A member of an older epoch than its set's header is dead (sets.ts): nothing to merge.
    if (member && isDead(incoming.epoch, this.opts.headerOf(k))) return undefined;
    const current = readAt(key, k);
    if (current === undefined && this.mayBeForgotten(incoming)) {
      this.opts.onRefused();
      return undefined;
    }
    // The sender's item hash holds only for the state exactly as it sent it.
    const done = this.merge(key, k, current, incoming, clamped ? undefined : hashes);
    if (!member) return done;
    // A member implies its set's header of its epoch, which replication may deliver later, or not at
    // all if the set grew from an epoch this node already holds: merge it in (a join, like any other).
    const setK = setKeyOf(k);
    const setKey = Buffer.from(setK, 'latin1');
    const header = this.merge(setKey, setK, readAt(setKey, setK), { epoch: incoming.epoch, flags: kindFlags(KIND.set), expiry: undefined, payload: EMPTY });
    return header ?? done;
  }

  /** Merges `incoming` into `current`, the record under `key` (latin1 `k`); undefined if nothing changed. */
  private merge(key: Buffer, k: string, current: Buffer | undefined, incoming: RecordState, hashes?: Hashes): Ack | undefined {
    const merged = mergeInto(current, incoming);
    if (merged === undefined) return undefined;
    const { state, flags, body } = merged;
    return this.opts.write({ key, version: state.epoch, flags, body, origin: 'remote', k, current, hashes: state === incoming ? hashes : undefined });
  }

  /**
   * Whether a state for a key we do not hold was last changed (or expired) before our purge horizon:
   * it may be one whose delete or expiry we have forgotten (its tombstone purged). Taking it would
   * resurrect the key.
   */
  private mayBeForgotten(state: RecordState): boolean {
    const horizon = this.opts.purgedBefore();
    if (horizon === 0) return false;
    const expiredAt = state.expiry?.at ?? 0;
    return (expiredAt !== 0 && expiredAt < horizon) || (isSimpleState(state) ? state.epoch.wall : newestWall(state)) < horizon;
  }
}

const EMPTY = Buffer.alloc(0);
