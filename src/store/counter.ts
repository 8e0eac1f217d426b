import { ProtocolError } from '../errors.js';
import { checkNodeId } from '../rules.js';
import { compareHlc, type Hlc } from '../hlc.js';

/*
 * A PN-counter's payload (DESIGN.md section 4): a base, the value the counter started from in its epoch
 * (a plain integer that INC turned into a counter, or 0), and per node that ever changed it within the
 * epoch, the totals it added and subtracted and the clock reading of its last change. The value is
 * base + sum(p) - sum(n). Each node only ever raises its own totals, so merging two states takes the
 * maximum of each node's totals: commutative, associative, idempotent. The size grows with the
 * number of nodes that wrote the counter, not with the number of increments.
 *
 * Canonical encoding (replicas with the same state have the same bytes, hence the same item hash):
 *   base (i64), entry count (u16), then per entry in node-id byte order:
 *   node id length (u8), node id, p (u64), n (u64), wall (6), counter (2)
 */

export interface CounterEntry {
  readonly node: string;
  readonly p: bigint;
  readonly n: bigint;
  readonly at: Hlc;
}

export interface Counter {
  readonly base: bigint;
  /** Sorted by node id bytes. */
  readonly entries: readonly CounterEntry[];
}

export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;
/** More writers than any cluster has: a bound on what a peer may make us decode. */
export const MAX_COUNTER_NODES = 4096;

const INTEGER = /^[+-]?\d{1,19}$/;

/** A signed 64-bit decimal integer, or undefined (for INC's amount and a plain value INC turns into a counter). */
export function parseInt64(text: string): bigint | undefined {
  if (!INTEGER.test(text)) return undefined;
  const n = BigInt(text);
  return n >= INT64_MIN && n <= INT64_MAX ? n : undefined;
}

export function counterValue(c: Counter): bigint {
  let v = c.base;
  for (const e of c.entries) v += e.p - e.n;
  return v;
}

/**
 * The counter after `node` adds `delta` at clock reading `at`, or undefined if the value would leave
 * the signed 64-bit range (or the node's own total its unsigned one).
 */
export function increment(c: Counter, node: string, delta: bigint, at: Hlc): Counter | undefined {
  const next = counterValue(c) + delta;
  if (next < INT64_MIN || next > INT64_MAX) return undefined;
  const i = c.entries.findIndex((e) => e.node === node);
  const old = i === -1 ? { node, p: 0n, n: 0n, at } : (c.entries[i] as CounterEntry);
  const entry = delta >= 0n ? { node, p: old.p + delta, n: old.n, at } : { node, p: old.p, n: old.n - delta, at };
  if (entry.p > UINT64_MAX || entry.n > UINT64_MAX) return undefined;
  const entries = [...c.entries];
  if (i !== -1) {
    entries[i] = entry;
    return { base: c.base, entries };
  }
  entries.push(entry);
  return { base: c.base, entries: sortByNode(entries) };
}

/** The join of two states of one epoch: each node's greater totals (and later reading). */
export function mergeCounters(a: Counter, b: Counter): Counter {
  const byNode = new Map<string, CounterEntry>();
  for (const e of a.entries) byNode.set(e.node, e);
  for (const e of b.entries) {
    const o = byNode.get(e.node);
    if (o === undefined) byNode.set(e.node, e);
    else byNode.set(e.node, { node: e.node, p: max(o.p, e.p), n: max(o.n, e.n), at: compareHlc(o.at, e.at) >= 0 ? o.at : e.at });
  }
  // Both states of one epoch started from the same base; the larger keeps the merge deterministic anyway.
  return { base: max(a.base, b.base), entries: sortByNode([...byNode.values()]) };
}

/** The newest clock reading of any change in the counter (0 for none). */
export function newestChange(c: Counter): number {
  let wall = 0;
  for (const e of c.entries) wall = Math.max(wall, e.at.wall);
  return wall;
}

export function encodeCounter(c: Counter): Buffer {
  const ids = c.entries.map((e) => Buffer.from(e.node, 'utf8'));
  const size = 10 + ids.reduce((s, id) => s + 1 + id.length + 24, 0);
  const buf = Buffer.allocUnsafe(size);
  let o = buf.writeBigInt64BE(c.base, 0);
  o = buf.writeUInt16BE(c.entries.length, o);
  c.entries.forEach((e, i) => {
    const id = ids[i] as Buffer;
    buf[o++] = id.length;
    o += id.copy(buf, o);
    o = buf.writeBigUInt64BE(e.p, o);
    o = buf.writeBigUInt64BE(e.n, o);
    o = buf.writeUIntBE(e.at.wall, o, 6);
    o = buf.writeUInt16BE(e.at.counter, o);
  });
  return buf;
}

/**
 * Decodes a counter's payload, checking it unless `trusted` (a record this store wrote and checked
 * before): a payload from a peer must not make us hold what a client could not write.
 */
export function decodeCounter(buf: Buffer, trusted = false): Counter {
  const bad = (): ProtocolError => new ProtocolError('malformed counter record');
  if (buf.length < 10) throw bad();
  const base = buf.readBigInt64BE(0);
  const count = buf.readUInt16BE(8);
  if (count > MAX_COUNTER_NODES) throw bad();
  const entries: CounterEntry[] = [];
  let o = 10;
  for (let i = 0; i < count; i++) {
    const len = buf[o] ?? 0;
    if (o + 1 + len + 24 > buf.length) throw bad();
    const node = trusted ? buf.toString('utf8', o + 1, o + 1 + len) : checkNodeId(buf.subarray(o + 1, o + 1 + len));
    o += 1 + len;
    entries.push({ node, p: buf.readBigUInt64BE(o), n: buf.readBigUInt64BE(o + 8), at: { wall: buf.readUIntBE(o + 16, 6), counter: buf.readUInt16BE(o + 22) } });
    o += 24;
  }
  if (o !== buf.length) throw bad();
  if (trusted) return { base, entries };
  const sorted = sortByNode([...entries]);
  if (sorted.some((e, i) => e !== entries[i] || (i > 0 && e.node === sorted[i - 1]?.node))) throw bad();
  return { base, entries };
}

/** Sorts by node id bytes (the canonical order; JavaScript's string order differs beyond the BMP). */
export function sortByNode<T extends { readonly node: string }>(entries: T[]): T[] {
  if (entries.length < 2) return entries;
  const keyed = entries.map((e) => ({ bytes: Buffer.from(e.node, 'utf8'), e }));
  keyed.sort((x, y) => Buffer.compare(x.bytes, y.bytes));
  return keyed.map((k) => k.e);
}

function max(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}
