import { counterValue, decodeCounter, encodeCounter, increment as add, parseInt64, type Counter } from './counter.js';
import type { Version } from './hlc.js';
import { KIND, kindFlags } from './record.js';
import { epochOfAbsent, isAbsentState, plainState, stateKind, stateOf, type ExpiryRegister, type RecordState } from './state.js';
import type { Ack, Read, Store } from './store.js';

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
  const next = add(counter, store.nodeId, delta, store.clock.now());
  if (next === undefined) return 'overflow';
  const after = store.writeState(key, { epoch, flags: kindFlags(KIND.counter), expiry, payload: encodeCounter(next) });
  return { value: counterValue(next), after };
}

/** SETEX: a plain value that expires at `at` (ms since the Unix epoch). */
export function setWithExpiry(store: Store, key: Buffer, value: Buffer, at: number): Ack {
  return store.writeState(key, plainState({ ...store.clock.now(), node: store.nodeId }, value, at));
}

/**
 * EXPIRE (`at` in ms since the Unix epoch) and PERSIST (`at` 0): sets the expiry register of what the
 * key holds. Returns undefined if the key is absent; no write for a PERSIST of a key without expiry.
 */
export function expire(store: Store, key: Buffer, at: number): Ack | undefined {
  const state = current(store, key);
  if (state === undefined || isAbsentState(state, Date.now())) return undefined;
  if (at === 0 && (state.expiry === undefined || state.expiry.at === 0)) return store.readRecord(key).after;
  return store.writeState(key, { ...state, expiry: { at, version: { ...store.clock.now(), node: store.nodeId } } });
}

/** When the live value under `key` expires (ms since the Unix epoch), or 0 if it does not or is absent. */
export function expiresAt(store: Store, key: Buffer): number {
  const state = current(store, key);
  if (state === undefined || isAbsentState(state, Date.now())) return 0;
  return state.expiry?.at ?? 0;
}

/** TTL: ms until the key expires, null if it does not, undefined if it is absent. */
export function timeToLive(store: Store, key: Buffer): Read<number | null | undefined> {
  const { value: rec, after } = store.readRecord(key);
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
  const rec = store.readRecord(key).value;
  return rec === undefined ? undefined : stateOf(Buffer.from(rec));
}
