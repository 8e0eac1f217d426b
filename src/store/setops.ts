import type { Version } from '../hlc.js';
import { addMember, decodeMember, encodeMember, isPresent, memberKey, removeMember, type MemberState } from './members.js';
import { compareWithRecord, HEADER, KIND, kindFlags, payloadOffset } from './record.js';
import { epochOfAbsent, isAbsentState, stateKind, stateOf, type RecordState } from './state.js';
import type { Store } from './store.js';
import type { Read } from './types.js';
import type { Ack } from './writepath.js';

/*
 * The set commands (DESIGN.md sections 2 and 4): SADD, SREM, SMEMBERS, SISMEMBER, SCARD. A set is a
 * header record under its key and one member record per member (members.ts). SADD and SREM read and
 * write only the members they name (and the header when the set is made), so their cost does not
 * grow with the set; each member record travels alone, as a delta of the set.
 */

export type SetResult<T> = Read<T> | 'wrongtype';

/** What the key holds, as the set commands see it. */
interface SetView {
  /** The stored header when the key holds a live set (empty or not). */
  readonly header: Buffer | undefined;
  readonly state: RecordState | undefined;
}

/**
 * An upper bound of what SADD of `members` adds to the data `[storage] memory_limit_mb` bounds
 * (capacity.ts): the set's header, and for each member its record (key, header, node id and an add of
 * at most MEMBER_PAYLOAD_BYTES). SADD checks it whole before it writes anything.
 */
export function addMembersGrowth(store: Store, key: Buffer, members: readonly Buffer[]): number {
  const node = Buffer.byteLength(store.nodeId, 'latin1');
  let growth = key.length + HEADER + node;
  for (const m of members) growth += 3 + key.length + m.length + HEADER + node + MEMBER_PAYLOAD_BYTES;
  return growth;
}

const MEMBER_PAYLOAD_BYTES = 64;

/**
 * SADD: adds the members (a new add of each, present or not); makes the set if the key holds none.
 * Returns how many were not in the set before, as Redis counts.
 */
export function addMembers(store: Store, key: Buffer, members: readonly Buffer[]): SetResult<number> {
  const view = viewOf(store, key);
  if (view === 'wrongtype') return view;
  let epoch: Version;
  let last: Ack = null;
  const state = view.state;
  if (view.header !== undefined && state !== undefined) {
    epoch = state.epoch;
    // An emptied set is gone in Redis, its TTL with it: the set made again here has none.
    if (store.cardinality(key, view.header) === 0 && state.expiry !== undefined && state.expiry.at !== 0) {
      last = store.writeState(key, { ...state, expiry: { at: 0, version: store.newVersion() } });
    }
  } else {
    // The epoch of what it grows from, so that nodes making it at once merge their members (state.ts).
    epoch = epochOfAbsent(state);
    last = store.writeState(key, { epoch, flags: kindFlags(KIND.set), expiry: undefined, payload: EMPTY });
  }
  let added = 0;
  for (const member of members) {
    const mk = memberKey(key, member);
    const current = memberOf(store, mk, epoch);
    if (!isPresent(current)) added++;
    // A new add even of a member already there: a remove made elsewhere at the same time saw only
    // the older adds, so the member survives it (add wins).
    last = store.writeState(mk, memberState(epoch, addMember(current, store.nodeId, store.newVersion()))) ?? last;
  }
  return { value: added, after: last };
}

/** SREM: removes the adds of each member that this node has seen. Returns how many members were in the set. */
export function removeMembers(store: Store, key: Buffer, members: readonly Buffer[]): SetResult<number> {
  const view = viewOf(store, key);
  if (view === 'wrongtype') return view;
  if (view.header === undefined || view.state === undefined) return { value: 0, after: store.read(key).after };
  const epoch = view.state.epoch;
  let last: Ack = null;
  let removed = 0;
  for (const member of members) {
    const mk = memberKey(key, member);
    const current = memberOf(store, mk, epoch);
    if (!isPresent(current)) continue;
    last = store.writeState(mk, memberState(epoch, removeMember(current, store.newVersion()))) ?? last;
    removed++;
  }
  return { value: removed, after: last };
}

/** SMEMBERS: the members, in byte order (copies). */
export function listMembers(store: Store, key: Buffer): SetResult<Buffer[]> {
  const view = viewOf(store, key);
  if (view === 'wrongtype') return view;
  const value = view.header === undefined ? [] : store.members(key, view.header);
  // Member records are read without their own durability waits: wait for every local write so far.
  return { value, after: store.acknowledgedAfter() };
}

/** SISMEMBER. */
export function hasMember(store: Store, key: Buffer, member: Buffer): SetResult<boolean> {
  const view = viewOf(store, key);
  if (view === 'wrongtype') return view;
  if (view.header === undefined || view.state === undefined) return { value: false, after: store.read(key).after };
  const mk = memberKey(key, member);
  return { value: isPresent(memberOf(store, mk, view.state.epoch)), after: store.read(mk).after };
}

/** SCARD. */
export function countMembers(store: Store, key: Buffer): SetResult<number> {
  const view = viewOf(store, key);
  if (view === 'wrongtype') return view;
  const value = view.header === undefined ? 0 : store.cardinality(key, view.header);
  return { value, after: store.acknowledgedAfter() };
}

/**
 * The key's header if it holds a live set; its state if it holds anything (for the epoch a new set
 * grows from); 'wrongtype' for a live value of another kind.
 */
function viewOf(store: Store, key: Buffer): SetView | 'wrongtype' {
  const rec = store.read(key).value;
  if (rec === undefined) return { header: undefined, state: undefined };
  const header = Buffer.from(rec);
  const state = stateOf(header);
  if (isAbsentState(state, Date.now())) return { header: undefined, state };
  if (stateKind(state) !== KIND.set) return 'wrongtype';
  return { header, state };
}

/** The member record's state in `epoch` (empty if there is none, or only one of another epoch). */
function memberOf(store: Store, mk: Buffer, epoch: Version): MemberState {
  const rec = store.read(mk).value;
  if (rec === undefined || compareWithRecord(epoch, rec) !== 0) return [];
  return decodeMember(Buffer.from(rec.subarray(payloadOffset(rec))), true);
}

function memberState(epoch: Version, m: MemberState): RecordState {
  return { epoch, flags: kindFlags(KIND.member), expiry: undefined, payload: encodeMember(m) };
}

const EMPTY = Buffer.alloc(0);
