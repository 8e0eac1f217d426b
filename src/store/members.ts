import { ProtocolError } from '../errors.js';
import { checkKey, checkNodeId, type Limits } from '../rules.js';
import { sortByNode } from './counter.js';
import { compareHlc, type Hlc } from '../hlc.js';
import { KIND, kindOf } from './record.js';

/*
 * An add-wins set's members (DESIGN.md section 4; docs/ARCHITECTURE.md, "Kinds of record").
 *
 * A set is a header record under its key (kind set: the epoch, the expiry register, no payload) and one
 * member record per member, each under its own internal key and merged on its own. So SADD and SREM
 * read and write one member record whatever the set's size, replication carries that record, and
 * anti-entropy finds and repairs the members that differ, not the set.
 *
 * A member record holds, per node that ever added the member in the set's epoch, that node's latest
 * add, a dot (the node id and the clock reading of the add), and when the add was removed (0: it was
 * not). A node's new add supersedes its older ones, so one entry per node is all the causal context a
 * member needs: an entry's dot says which of that node's adds were seen. The member is in the set if
 * any entry's add is not removed. SREM marks the adds it sees as removed; an add made concurrently
 * elsewhere has a dot that the remove did not see, so it survives the merge (add wins).
 *
 * Merge: per node, the entry with the later dot; of one dot, the later removal (any beats 0). That is a
 * join (commutative, associative, idempotent) on every entry, so on the record.
 *
 * A member record whose adds are all removed is a member's tombstone: it is purged like a key's, once
 * its last change is older than `tombstone_grace_seconds`, and a peer that offers back an add older
 * than what was purged is refused (store.ts, mayBeForgotten). Members of an older epoch of the set
 * (before a DEL or SET of the key) are dead and removed at once (sets.ts).
 *
 * Canonical payload (replicas with the same state have the same bytes):
 *   entry count (u16), then per entry in node-id byte order:
 *   node id length (u8), node id, dot wall (6), dot counter (2), removed wall (6), removed counter (2)
 *
 * Internal key of a member record: 0x00 (no client key starts with a control byte), the set key's
 * length (u16), the set key, the member. A set's members are adjacent in LMDB, in member byte order.
 */

export interface MemberEntry {
  readonly node: string;
  /** The clock reading of this node's latest add. */
  readonly dot: Hlc;
  /** When that add was removed; undefined while it is not. */
  readonly removed: Hlc | undefined;
}

/** Sorted by node id bytes. */
export type MemberState = readonly MemberEntry[];

/** More writers than any cluster has: a bound on what a peer may make us decode. */
export const MAX_MEMBER_NODES = 4096;
/** LMDB's largest key: a set key and member together must fit (with the 3 bytes before them). */
const MAX_INTERNAL_KEY = 1978;

/** The internal key of `member` in the set `setKey`. */
export function memberKey(setKey: Buffer, member: Buffer): Buffer {
  const key = Buffer.allocUnsafe(3 + setKey.length + member.length);
  key[0] = 0;
  key.writeUInt16BE(setKey.length, 1);
  setKey.copy(key, 3);
  member.copy(key, 3 + setKey.length);
  return key;
}

/** The first bytes of every member key of `setKey`. */
export function memberPrefix(setKey: Buffer): Buffer {
  return memberKey(setKey, EMPTY);
}

/** Whether a stored key is a member record's. */
export function isMemberKey(key: Buffer): boolean {
  return key[0] === 0;
}

/** The set key and member of a member record's key (views), or undefined for any other key. */
export function splitMemberKey(key: Buffer): { setKey: Buffer; member: Buffer } | undefined {
  if (key[0] !== 0 || key.length < 3) return undefined;
  const n = key.readUInt16BE(1);
  if (3 + n > key.length) return undefined;
  return { setKey: key.subarray(3, 3 + n), member: key.subarray(3 + n) };
}

/** The set key of a member key given as a latin1 string (as the store's maps hold keys). */
export function setKeyOf(k: string): string {
  return k.slice(3, 3 + k.charCodeAt(1) * 256 + k.charCodeAt(2));
}

/** Why `member` of `setKey` cannot be stored, or undefined: members follow the key rules (rules.ts). */
export function memberProblem(setKey: Buffer, member: Buffer, limits: Limits): string | undefined {
  try {
    checkKey(member, limits);
  } catch (err) {
    return `member: ${(err as Error).message}`;
  }
  if (3 + setKey.length + member.length > MAX_INTERNAL_KEY) {
    return `member too long (key and member together may have ${MAX_INTERNAL_KEY - 3} bytes)`;
  }
  return undefined;
}

/** A stored key as a peer sends it: a client key, or a member key whose set key and member pass the rules. */
export function checkRecordKey(key: Buffer, limits: Limits): Buffer {
  const parts = splitMemberKey(key);
  if (parts === undefined) return checkKey(key, limits);
  checkKey(parts.setKey, limits);
  const problem = memberProblem(parts.setKey, parts.member, limits);
  if (problem !== undefined) throw new ProtocolError(problem);
  return key;
}

/** Throws unless a member record is under a member key and every other record under a client key. */
export function checkKeyKind(key: Buffer, state: { readonly flags: number }): void {
  if (isMemberKey(key) !== (kindOf(state.flags) === KIND.member)) throw new ProtocolError('a set member record must be under a member key, and only one');
}

export function isPresent(m: MemberState): boolean {
  return m.some((e) => e.removed === undefined);
}

/** Whether an encoded member (at `o` of `buf`, to its end) is in the set, without decoding it. */
export function isPresentEncoded(buf: Buffer, o: number): boolean {
  const count = buf.readUInt16BE(o);
  let p = o + 2;
  for (let i = 0; i < count; i++) {
    p += 1 + (buf[p] as number) + 8;
    if (buf.readUInt32BE(p) === 0 && buf.readUInt32BE(p + 4) === 0) return true;
    p += 8;
  }
  return false;
}

/** The member after `node` adds it at `now`: its entry now holds this add. */
export function addMember(m: MemberState, node: string, now: Hlc): MemberState {
  const entry = { node, dot: now, removed: undefined };
  const i = m.findIndex((e) => e.node === node);
  if (i === -1) return sortByNode([...m, entry]);
  const next = [...m];
  next[i] = entry;
  return next;
}

/** The member after a remove at `now` of every add it holds. */
export function removeMember(m: MemberState, now: Hlc): MemberState {
  return m.map((e) => (e.removed === undefined ? { ...e, removed: now } : e));
}

/** The join of two states of one member (see above). */
export function mergeMembers(a: MemberState, b: MemberState): MemberState {
  const byNode = new Map<string, MemberEntry>();
  for (const e of a) byNode.set(e.node, e);
  for (const e of b) {
    const o = byNode.get(e.node);
    if (o === undefined || laterEntry(e, o)) byNode.set(e.node, e);
  }
  return sortByNode([...byNode.values()]);
}

function laterEntry(x: MemberEntry, y: MemberEntry): boolean {
  const order = compareHlc(x.dot, y.dot);
  if (order !== 0) return order > 0;
  if (y.removed === undefined) return x.removed !== undefined;
  return x.removed !== undefined && compareHlc(x.removed, y.removed) > 0;
}

/** The newest clock reading of any add or remove of the member. */
export function newestMemberChange(m: MemberState): number {
  let wall = 0;
  for (const e of m) wall = Math.max(wall, e.dot.wall, e.removed?.wall ?? 0);
  return wall;
}

export function encodeMember(m: MemberState): Buffer {
  const ids = m.map((e) => Buffer.from(e.node, 'utf8'));
  const buf = Buffer.allocUnsafe(2 + ids.reduce((s, id) => s + 1 + id.length + 16, 0));
  let o = buf.writeUInt16BE(m.length, 0);
  m.forEach((e, i) => {
    const id = ids[i] as Buffer;
    buf[o++] = id.length;
    o += id.copy(buf, o);
    o = writeHlc(buf, o, e.dot);
    o = writeHlc(buf, o, e.removed ?? ZERO);
  });
  return buf;
}

/**
 * Decodes a member's payload, checking it unless `trusted` (a record this store wrote and checked
 * before): sorted unique node ids, at least one entry, no add at time 0. (A removal may carry an
 * earlier clock reading than its add: the remover's clock may be behind the adder's.)
 */
export function decodeMember(buf: Buffer, trusted = false): MemberState {
  const bad = (): ProtocolError => new ProtocolError('malformed set member record');
  if (buf.length < 2) throw bad();
  const count = buf.readUInt16BE(0);
  if (!trusted && (count === 0 || count > MAX_MEMBER_NODES)) throw bad();
  const out: MemberEntry[] = [];
  let o = 2;
  for (let i = 0; i < count; i++) {
    const len = buf[o] ?? 0;
    if (o + 1 + len + 16 > buf.length) throw bad();
    const node = trusted ? buf.toString('utf8', o + 1, o + 1 + len) : checkNodeId(buf.subarray(o + 1, o + 1 + len));
    o += 1 + len;
    const dot = readHlc(buf, o);
    const removed = readHlc(buf, o + 8);
    o += 16;
    out.push({ node, dot, removed: removed.wall === 0 && removed.counter === 0 ? undefined : removed });
  }
  if (o !== buf.length) throw bad();
  if (trusted) return out;
  const sorted = sortByNode([...out]);
  const wrong = (e: MemberEntry, i: number): boolean => e !== out[i] || (i > 0 && e.node === sorted[i - 1]?.node) || e.dot.wall === 0;
  if (sorted.some(wrong)) throw bad();
  return out;
}

function writeHlc(buf: Buffer, o: number, h: Hlc): number {
  o = buf.writeUIntBE(h.wall, o, 6);
  return buf.writeUInt16BE(h.counter, o);
}

function readHlc(buf: Buffer, o: number): Hlc {
  return { wall: buf.readUIntBE(o, 6), counter: buf.readUInt16BE(o + 6) };
}

const EMPTY = Buffer.alloc(0);
const ZERO: Hlc = { wall: 0, counter: 0 };
