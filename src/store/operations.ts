import { counterValue, decodeCounter, encodeCounter, increment as add, parseInt64, type Counter } from './counter.js';
import type { Version } from '../hlc.js';
import { HEADER, isAbsent, isTombstone, KIND, kindFlags, recordClientFlags, recordExpiry, recordItem, recordKind, recordValue } from './record.js';
import { epochOfAbsent, isAbsentState, plainState, stateKind, stateOf, type ExpiryRegister, type RecordState } from './state.js';
import type { Store } from './store.js';
import type { Read } from './types.js';
import type { Ack } from './writepath.js';

/*
 * The commands that build on what a key holds (DESIGN.md sections 2 and 4): they read its state, make
 * the next one and write it through the store, which logs, hashes and publishes it like any write.
 * Their rules are state.ts's: a counter keeps the epoch of the value or tombstone it grew from, so
 * nodes incrementing it at once merge; an expiry is a register of that epoch.
 */

export type IncrementResult = { readonly value: bigint; readonly after: Ack } | 'wrongtype' | 'not-a-number' | 'overflow';

/**
 * INC/DEC: adds `delta` to the counter under `key`, making one from a missing, deleted or expired key
 * (0) or from a plain integer value (its base). A plain value keeps its expiry, as in Redis.
 */
export function increment(store: Store, key: Buffer, delta: bigint): IncrementResult {
  const state = current(store, key);
  const now = Date.now();
  let epoch: Version;
  let counter: Counter = { base: 0n, entries: [] };
  let expiry: ExpiryRegister | undefined;
  if (state === undefined || isAbsentState(state, now)) {
    epoch = epochOfAbsent(state);
  } else {
    epoch = state.epoch;
    expiry = state.expiry;
    const kind = stateKind(state);
    if (kind === KIND.counter) {
      counter = decodeCounter(state.payload, true);
    } else if (kind === KIND.plain) {
      const base = parseInt64(state.payload.toString('latin1'));
      if (base === undefined) return 'not-a-number';
      counter = { base, entries: [] };
    } else {
      return 'wrongtype';
    }
  }
  const next = add(counter, store.counterWriter, delta, store.newVersion());
  if (next === undefined) return 'overflow';
  const after = store.writeState(key, { epoch, flags: kindFlags(KIND.counter), expiry, payload: encodeCounter(next) });
  return { value: counterValue(next), after };
}

/**
 * A live value as memcached sees it: its bytes (a counter's decimal text), client flags, expiry (ms,
 * 0 none), whether it is a counter, and its CAS unique. Views into the store's buffers: use before
 * the next store call.
 */
export interface Item {
  readonly value: Buffer;
  readonly flags: number;
  readonly expiresAt: number;
  readonly counter: boolean;
  /** The record it was read from, for `casUnique` (opaque outside the store). */
  readonly rec: Buffer;
}

/** The live item under `key`; undefined for absent and expired keys and sets (memcached cannot see them). */
export function readItem(store: Store, key: Buffer): Item | undefined {
  const rec = store.read(key).value;
  if (rec === undefined || isAbsent(rec, Date.now())) return undefined;
  const kind = recordKind(rec);
  if (kind === KIND.plain) return { value: recordValue(rec), flags: recordClientFlags(rec), expiresAt: recordExpiry(rec), counter: false, rec };
  if (kind !== KIND.counter) return undefined;
  const value = Buffer.from(counterValue(decodeCounter(recordValue(rec), true)).toString());
  return { value, flags: 0, expiresAt: recordExpiry(rec), counter: true, rec };
}

/**
 * What writes of `pairs` (plain values) would add to the data `[storage] memory_limit_mb` bounds
 * (capacity.ts): each new record's bytes less what its key holds now. MSET checks it whole before it
 * writes anything, so that it is refused whole.
 */
export function setsGrowth(store: Store, pairs: readonly (readonly [Buffer, Buffer])[]): number {
  const node = Buffer.byteLength(store.nodeId, 'latin1');
  let growth = 0;
  for (const [key, value] of pairs) {
    const rec = store.read(key).value;
    growth += key.length + HEADER + node + value.length - (rec === undefined || isAbsent(rec, Date.now()) ? 0 : key.length + rec.length);
  }
  return growth;
}

/** Deletes every live key (as tombstones, so the deletes replicate). */
export function truncate(store: Store): Ack {
  let last: Ack = null;
  for (const key of store.scan(EMPTY)) last = store.delete(key) ?? last;
  return last;
}

const EMPTY = Buffer.alloc(0);

/** Whether `key` holds a record whose expiry has passed (memcached's get_expired: a miss that found one). */
export function hasExpired(store: Store, key: Buffer): boolean {
  const rec = store.read(key).value;
  return rec !== undefined && !isTombstone(rec) && isAbsent(rec, Date.now());
}

/**
 * The CAS unique of an item: the first 63 bits of its record's Merkle item hash, which changes with
 * every new version of the item (value, flags, expiry) and with nothing else, so replicas holding the
 * same version give the same unique, before and after a restart. In 1 .. 2^63 - 1: clients keep it in a
 * signed 64-bit integer (spymemcached's long, pylibmc) or print it into 20 bytes (libmemcached).
 */
export function casUnique(item: Item): bigint {
  const cas = Buffer.from(recordItem(item.rec), 'latin1').readBigUInt64BE(0) & CAS_MASK;
  return cas === 0n ? 1n : cas;
}

const CAS_MASK = (1n << 63n) - 1n;

/** memcached's set: a plain value with client flags, expiring at `expiresAt` (ms since the Unix epoch; 0 never). */
export function writeItem(store: Store, key: Buffer, item: { readonly value: Buffer; readonly flags: number; readonly expiresAt: number }): Ack {
  return store.writeState(key, { ...plainState(store.newVersion(), item.value, item.expiresAt), clientFlags: item.flags });
}

/** SETEX: a plain value that expires at `at` (ms since the Unix epoch). */
export function setWithExpiry(store: Store, key: Buffer, value: Buffer, at: number): Ack {
  return store.writeState(key, plainState(store.newVersion(), value, at));
}

/**
 * EXPIRE (`at` in ms since the Unix epoch) and PERSIST (`at` 0): sets the expiry register of what the
 * key holds. Returns undefined if the key is absent; no write for a PERSIST of a key without expiry.
 */
export function expire(store: Store, key: Buffer, at: number): Ack | undefined {
  const state = current(store, key);
  if (state === undefined || isAbsentState(state, Date.now())) return undefined;
  if (at === 0 && (state.expiry === undefined || state.expiry.at === 0)) return store.read(key).after;
  return store.writeState(key, { ...state, expiry: { at, version: store.newVersion() } });
}

/** When the live value under `key` expires (ms since the Unix epoch), or 0 if it does not or is absent. */
export function expiresAt(store: Store, key: Buffer): number {
  const state = current(store, key);
  if (state === undefined || isAbsentState(state, Date.now())) return 0;
  return state.expiry?.at ?? 0;
}

/** TTL: ms until the key expires, null if it does not, undefined if it is absent. */
export function timeToLive(store: Store, key: Buffer): Read<number | null | undefined> {
  const { value: rec, after } = store.read(key);
  const now = Date.now();
  if (rec === undefined) return { value: undefined, after };
  const state = stateOf(rec);
  // A set whose members were all removed is gone, as in Redis.
  if (isAbsentState(state, now) || (stateKind(state) === KIND.set && store.cardinality(key, rec) === 0)) return { value: undefined, after };
  const at = state.expiry?.at ?? 0;
  return { value: at === 0 ? null : at - now, after };
}

/** The state under `key`, copied out of LMDB's buffer (the write that follows reads it again). */
function current(store: Store, key: Buffer): RecordState | undefined {
  const rec = store.read(key).value;
  return rec === undefined ? undefined : stateOf(Buffer.from(rec));
}
