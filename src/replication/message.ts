import { isUtf8 } from 'node:buffer';
import { isValidKey, isValidNodeId, isValidValue, maxMessageBytes, MAX_OPS_PER_MESSAGE, type Limits } from '../rules.js';
import { type AcknowledgedWrite, type Counter, type CounterEntry, decodeCounter, decodeMember, encodeCounter, encodeMember, type ExpiryRegister, FLAG_TOMBSTONE, KIND, kindFlags, MAX_COUNTER_NODES, MAX_MEMBER_NODES, type MemberEntry, memberKey, memberProblem, parseInt64, type RecordState, sortByNode, splitMemberKey, stateKind, stateOf, isSimple, isTombstone, recordValue, recordVersionOf } from '../store/index.js';
import { formatHlc, parseHlc, type Version } from '../hlc.js';

/*
 * Replication messages (DESIGN.md section 5): JSON that `mosquitto_sub -v` shows readably.
 *
 *   {"v":1,"node":"node-1","ops":[{"op":"set","key":"user:1","val":"alice","hlc":"0193a0b1c2d3-0000"},
 *                                  {"op":"del","key":"user:2","hlc":"0193a0b1c2d3-0001"},
 *                                  {"op":"counter","key":"hits","hlc":"0193a0b1c2d3-0001","base":"0",
 *                                   "totals":[["node-1","17","2","0193a0b1c2d9-0000"]]},
 *                                  {"op":"newset","key":"tags","hlc":"0000000000000-0000","by":""},
 *                                  {"op":"member","key":"tags","member":"red","hlc":"0000000000000-0000","by":"",
 *                                   "adds":[["node-1","0193a0b1c2da-0000",""]]}]}
 *
 * Each op is a state (store/state.ts) the receiver merges into its own. "hlc" is the op's epoch; its node
 * is the message's unless "by" names another (a counter incremented here may descend from another
 * node's SET; "" is the zero epoch). A value that is not valid UTF-8 travels as base64 with "enc":"b64".
 * A counter op carries only the sending node's totals ("totals": node, added, subtracted, clock reading
 * of its last change; numbers as decimal strings, they are 64-bit): a delta, which merges like the
 * whole. An expiry register travels as "exp" (ms since the Unix epoch, 0 for none) with "xhlc" and, if
 * not the message's node, "xby". A set travels as its parts (store/members.ts): "newset" makes the set
 * (its header: epoch and expiry), and "member" carries one member's record, per node that added it: its
 * latest add's clock reading and when that add was removed ("" if it was not).
 */
export const MESSAGE_VERSION = 1;

export interface Op {
  readonly key: Buffer;
  readonly state: RecordState;
}

export interface Message {
  readonly node: string;
  readonly ops: Op[];
}

/**
 * The op that publishes a record this node wrote: for a counter, only the totals of `writer` (the name
 * this node's totals go under, the store's counterWriter; by default the node id): a delta.
 */
export function opOf(key: Buffer, state: RecordState, node: string, writer = node): Op {
  if (stateKind(state) !== KIND.counter) return { key, state };
  const c = decodeCounter(state.payload, true);
  return { key, state: { ...state, payload: encodeCounter({ base: c.base, entries: c.entries.filter((e) => e.node === writer) }) } };
}

/** Encodes ops into messages of at most about `maxBytes` each (one op larger than that goes alone). */
export function encodeMessages(node: string, ops: readonly Op[], maxBytes: number): Buffer[] {
  return pack(node, ops.map((op) => wireOp(op.key, op.state, node, undefined)), maxBytes);
}

/**
 * Encodes records this node wrote (store/index.ts AcknowledgedWrite) as `encodeMessages` encodes their
 * ops (`opOf`), read from the record's bytes: a plain value or tombstone without decoding it into a
 * state, a counter decoded once.
 */
export function encodeWrites(node: string, writes: readonly AcknowledgedWrite[], maxBytes: number, writer = node): Buffer[] {
  const parts: string[] = [];
  for (const { key, rec } of writes) {
    if (!isSimple(rec)) {
      parts.push(wireOp(key, stateOf(rec), node, writer));
      continue;
    }
    const epoch = recordVersionOf(rec);
    parts.push(isTombstone(rec) ? delJson(key, epoch, node) : setJson(key, recordValue(rec), undefined, epoch, node, ''));
  }
  return pack(node, parts, maxBytes);
}

/** Packs ops' JSON into messages of at most about `maxBytes` each (one op larger than that goes alone). */
function pack(node: string, ops: readonly string[], maxBytes: number): Buffer[] {
  const head = `{"v":${MESSAGE_VERSION},"node":${JSON.stringify(node)},"ops":[`;
  const out: Buffer[] = [];
  let parts: string[] = [];
  let size = head.length + 2;
  for (const json of ops) {
    if (parts.length > 0 && size + json.length + 1 > maxBytes) {
      out.push(Buffer.from(`${head}${parts.join(',')}]}`));
      parts = [];
      size = head.length + 2;
    }
    parts.push(json);
    size += json.length + 1;
  }
  if (parts.length > 0) out.push(Buffer.from(`${head}${parts.join(',')}]}`));
  return out;
}

/**
 * One op as JSON, members in the order JSON.stringify would write them, built as text (a message may
 * carry thousands of ops; no object per op). `writer`: of a counter, only that writer's totals (opOf); undefined: all.
 */
function wireOp(key: Buffer, state: RecordState, node: string, writer: string | undefined): string {
  const expiry = state.expiry === undefined ? '' : wireExpiry(state.expiry, node);
  if ((state.flags & FLAG_TOMBSTONE) !== 0) return delJson(key, state.epoch, node);
  const kind = stateKind(state);
  const k = JSON.stringify(key.toString('utf8'));
  const version = versionJson(state.epoch, node);
  if (kind === KIND.set) return `{"op":"newset","key":${k},${version}${expiry}}`;
  if (kind === KIND.member) {
    const parts = splitMemberKey(key) as { setKey: Buffer; member: Buffer };
    const adds = decodeMember(state.payload, true).map((e) => `[${JSON.stringify(e.node)},"${formatHlc(e.dot)}","${e.removed === undefined ? '' : formatHlc(e.removed)}"]`);
    return `{"op":"member","key":${JSON.stringify(parts.setKey.toString('utf8'))},"member":${JSON.stringify(parts.member.toString('utf8'))},${version},"adds":[${adds.join(',')}]}`;
  }
  if (kind === KIND.counter) {
    const c = decodeCounter(state.payload, true);
    const entries = writer === undefined ? c.entries : c.entries.filter((e) => e.node === writer);
    const totals = entries.map((e) => `[${JSON.stringify(e.node)},"${e.p}","${e.n}","${formatHlc(e.at)}"]`).join(',');
    return `{"op":"counter","key":${k},${version},"base":"${c.base}","totals":[${totals}]${expiry}}`;
  }
  return setJson(key, state.payload, state.clientFlags, state.epoch, node, expiry);
}

function versionJson(epoch: Version, node: string): string {
  return `"hlc":"${formatHlc(epoch)}"${epoch.node === node ? '' : `,"by":${JSON.stringify(epoch.node)}`}`;
}

function delJson(key: Buffer, epoch: Version, node: string): string {
  return `{"op":"del","key":${JSON.stringify(key.toString('utf8'))},${versionJson(epoch, node)}}`;
}

/** A value: as text if it is UTF-8, else base64; with memcached's client flags when it has any. */
function setJson(key: Buffer, v: Buffer, clientFlags: number | undefined, epoch: Version, node: string, expiry: string): string {
  const k = JSON.stringify(key.toString('utf8'));
  const mcf = (clientFlags ?? 0) === 0 ? '' : `,"mcf":${clientFlags}`;
  const version = versionJson(epoch, node);
  if (isUtf8(v)) return `{"op":"set","key":${k},"val":${JSON.stringify(v.toString('utf8'))}${mcf},${version}${expiry}}`;
  return `{"op":"set","key":${k},"val":"${v.toString('base64')}","enc":"b64"${mcf},${version}${expiry}}`;
}

function wireExpiry(x: ExpiryRegister, node: string): string {
  return `,"exp":${x.at},"xhlc":"${formatHlc(x.version)}"${x.version.node === node ? '' : `,"xby":${JSON.stringify(x.version.node)}`}`;
}

/**
 * Parses and checks a message from the broker (rules.ts). Returns undefined for anything malformed or
 * over the caps (bytes, ops): a peer or a stranger on the broker must not be able to crash the node or
 * store what a client could not. Malformed ops inside a well-formed message are dropped and counted in
 * `invalidOps`.
 */
export function decodeMessage(payload: Buffer, limits: Limits): { message: Message; invalidOps: number } | undefined {
  if (payload.length > maxMessageBytes(limits)) return undefined;
  let doc: unknown;
  try {
    doc = JSON.parse(payload.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!isObject(doc) || doc.v !== MESSAGE_VERSION || typeof doc.node !== 'string' || !Array.isArray(doc.ops)) {
    return undefined;
  }
  if (!isValidNodeId(doc.node) || doc.ops.length > MAX_OPS_PER_MESSAGE) return undefined;
  const ops: Op[] = [];
  let invalidOps = 0;
  for (const raw of doc.ops) {
    const op = decodeOp(raw, limits, doc.node);
    if (op === undefined) invalidOps++;
    else ops.push(op);
  }
  return { message: { node: doc.node, ops }, invalidOps };
}

function decodeOp(raw: unknown, limits: Limits, node: string): Op | undefined {
  if (!isObject(raw) || typeof raw.key !== 'string') return undefined;
  const key = Buffer.from(raw.key, 'utf8');
  const epoch = version(raw.hlc, raw.by, node);
  if (epoch === undefined || !isValidKey(key, limits)) return undefined;
  if (raw.op === 'member') {
    if (typeof raw.member !== 'string' || raw.exp !== undefined) return undefined;
    const member = Buffer.from(raw.member, 'utf8');
    const adds = decodeAdds(raw.adds);
    if (memberProblem(key, member, limits) !== undefined || adds === undefined) return undefined;
    return { key: memberKey(key, member), state: { epoch, flags: kindFlags(KIND.member), expiry: undefined, payload: adds } };
  }
  let expiry: ExpiryRegister | undefined;
  if (raw.exp !== undefined) {
    const at = raw.exp;
    const v = version(raw.xhlc, raw.xby, node);
    if (typeof at !== 'number' || !Number.isSafeInteger(at) || at < 0 || at >= 2 ** 48 || v === undefined) return undefined;
    expiry = { at, version: v };
  }
  let flags: number;
  let payload: Buffer;
  let clientFlags: number | undefined;
  if (raw.mcf !== undefined) {
    if (raw.op !== 'set' || typeof raw.mcf !== 'number' || !Number.isInteger(raw.mcf) || raw.mcf < 1 || raw.mcf > 0xffff_ffff) return undefined;
    clientFlags = raw.mcf;
  }
  if (raw.op === 'del' && expiry === undefined) {
    flags = FLAG_TOMBSTONE;
    payload = Buffer.alloc(0);
  } else if (raw.op === 'set' && typeof raw.val === 'string') {
    flags = 0;
    if (raw.enc === 'b64') payload = Buffer.from(raw.val, 'base64');
    else if (raw.enc === undefined) payload = Buffer.from(raw.val, 'utf8');
    else return undefined;
    if (!isValidValue(payload, limits)) return undefined;
  } else if (raw.op === 'newset') {
    flags = kindFlags(KIND.set);
    payload = Buffer.alloc(0);
  } else if (raw.op === 'counter') {
    const c = decodeCounterOp(raw);
    if (c === undefined) return undefined;
    flags = kindFlags(KIND.counter);
    payload = encodeCounter(c);
  } else {
    return undefined;
  }
  return { key, state: { epoch, flags, expiry, ...(clientFlags === undefined ? {} : { clientFlags }), payload } };
}

function decodeCounterOp(raw: Record<string, unknown>): Counter | undefined {
  const base = typeof raw.base === 'string' ? parseInt64(raw.base) : undefined;
  if (base === undefined || !Array.isArray(raw.totals) || raw.totals.length > MAX_COUNTER_NODES) return undefined;
  const entries: CounterEntry[] = [];
  for (const t of raw.totals as unknown[]) {
    if (!Array.isArray(t) || t.length !== 4) return undefined;
    const [node, p, n, at] = t as unknown[];
    const hlc = typeof at === 'string' ? parseHlc(at) : undefined;
    const pp = uint64(p);
    const nn = uint64(n);
    if (typeof node !== 'string' || !isValidNodeId(node) || hlc === undefined || pp === undefined || nn === undefined) return undefined;
    entries.push({ node, p: pp, n: nn, at: hlc });
  }
  entries.sort((x, y) => Buffer.compare(Buffer.from(x.node, 'utf8'), Buffer.from(y.node, 'utf8')));
  if (entries.some((e, i) => i > 0 && e.node === entries[i - 1]?.node)) return undefined;
  return { base, entries };
}

/** A member's "adds", encoded and checked as a peer's member record is (members.ts). */
function decodeAdds(raw: unknown): Buffer | undefined {
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_MEMBER_NODES) return undefined;
  const entries: MemberEntry[] = [];
  for (const a of raw as unknown[]) {
    if (!Array.isArray(a) || a.length !== 3) return undefined;
    const [node, dot, removed] = a as unknown[];
    const d = typeof dot === 'string' ? parseHlc(dot) : undefined;
    const r = removed === '' ? null : typeof removed === 'string' ? parseHlc(removed) : undefined;
    if (typeof node !== 'string' || !isValidNodeId(node) || d === undefined || r === undefined) return undefined;
    entries.push({ node, dot: d, removed: r ?? undefined });
  }
  const payload = encodeMember(sortByNode(entries));
  try {
    // Checked as a record from a peer is: unique node ids, adds after time 0.
    decodeMember(payload);
  } catch {
    return undefined;
  }
  return payload;
}

function uint64(v: unknown): bigint | undefined {
  if (typeof v !== 'string' || !/^\d{1,20}$/.test(v)) return undefined;
  const n = BigInt(v);
  return n < 2n ** 64n ? n : undefined;
}

/** An op's epoch or expiry version: `hlc`, and `by` (the message's node when absent; "" allowed). */
function version(hlc: unknown, by: unknown, node: string): Version | undefined {
  const h = typeof hlc === 'string' ? parseHlc(hlc) : undefined;
  if (h === undefined) return undefined;
  // Literals, not `{ ...h, node }`: a spread gave nearly every version its own hidden class (measured), which
  // made every later property load on it (the merge, the item hash) a cache miss on the replica's path.
  if (by === undefined) return { wall: h.wall, counter: h.counter, node };
  return typeof by === 'string' && (by === '' || isValidNodeId(by)) ? { wall: h.wall, counter: h.counter, node: by } : undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
