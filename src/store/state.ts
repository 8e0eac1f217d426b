import { ProtocolError } from '../errors.js';
import { checkEpochNode, type Limits } from '../rules.js';
import { decodeCounter, encodeCounter, mergeCounters, newestChange } from './counter.js';
import { compareVersion, type Version } from '../hlc.js';
import { decodeMember, encodeMember, mergeMembers, newestMemberChange } from './members.js';
import { CLIENT_FLAGS_BYTES, compareWithRecord, FLAG_CLIENT_FLAGS, FLAG_EXPIRY, FLAG_TOMBSTONE, isSimple, KIND, kindOf, KNOWN_FLAGS, readRegister, recordBody, recordFlags, recordVersionOf, registerLength, writeRegister, type Kind } from './record.js';

/*
 * A record's state, and the one merge every path uses (DESIGN.md section 4; docs/ARCHITECTURE.md,
 * "Kinds of record"): replication, anti-entropy, and the local commands that build on what is stored.
 *
 * - The epoch is the version of the last-writer-wins write the record descends from (SET, SETEX, DEL,
 *   APPEND, ...). A newer epoch wins outright: its state replaces the older one, whatever the kinds.
 * - Within one epoch, states merge: a counter or set that grew out of the epoch's plain value or
 *   tombstone wins over it (INC on "5" keeps the epoch of the SET that wrote "5", so two nodes that
 *   both increment it merge instead of overwriting each other); two counters merge by per-node maxima.
 * - A set is a header record (the epoch, an expiry register, no payload) and one record per member
 *   (members.ts), whose epoch is the set's: a member of an older epoch is dead, one of the same epoch
 *   merges entry by entry.
 * - The expiry register (when the record expires, and the version of the SETEX/EXPIRE/PERSIST that
 *   said so) belongs to the epoch: within one, the newer register wins; a new epoch starts without
 *   one (SET clears a TTL, as in Redis).
 * Every rule is a join (commutative, associative, idempotent), so replicas converge in any order.
 */

export interface ExpiryRegister {
  /** ms since the Unix epoch; 0: does not expire (PERSIST). */
  readonly at: number;
  readonly version: Version;
}

export interface RecordState {
  readonly epoch: Version;
  /** FLAG_TOMBSTONE and the kind (FLAG_EXPIRY follows from `expiry`). */
  readonly flags: number;
  readonly expiry: ExpiryRegister | undefined;
  /**
   * A plain value's client flags (memcached's 32 bits), stored with it and replicated with it;
   * undefined when there are none (0), which is how every write but memcached's leaves a value.
   */
  readonly clientFlags?: number | undefined;
  /** A plain value's bytes, a counter's encoding (counter.ts), nothing (a set's header), a member's (members.ts). */
  readonly payload: Buffer;
}

/** The epoch of a counter or set made from nothing: older than every write, so any DEL or SET wins over it. */
export const ZERO_EPOCH: Version = { wall: 0, counter: 0, node: '' };

export function stateKind(s: RecordState): Kind {
  return kindOf(s.flags);
}

/** A plain value or tombstone without an expiry register or client flags: what last writer wins alone decides. */
export function isSimpleState(s: RecordState): boolean {
  return s.flags <= FLAG_TOMBSTONE && s.expiry === undefined && (s.clientFlags ?? 0) === 0;
}

/** Decodes a stored record's state (`rec` as record.ts lays it out; checked when it was written). */
export function stateOf(rec: Buffer): RecordState {
  return parseBody(recordVersionOf(rec), recordFlags(rec), recordBody(rec), undefined, true);
}

/** The flags byte and body (record.ts) of a state. */
export function encodeState(s: RecordState): { flags: number; body: Buffer } {
  // Flags 0 are stored as none: one state, one encoding.
  const clientFlags = s.clientFlags === 0 ? undefined : s.clientFlags;
  const client = clientFlags === undefined ? 0 : CLIENT_FLAGS_BYTES;
  const flags = (s.flags & ~(FLAG_EXPIRY | FLAG_CLIENT_FLAGS)) | (s.expiry === undefined ? 0 : FLAG_EXPIRY) | (client === 0 ? 0 : FLAG_CLIENT_FLAGS);
  if (s.expiry === undefined && client === 0) return { flags, body: s.payload };
  const node = s.expiry === undefined ? undefined : Buffer.from(s.expiry.version.node, 'utf8');
  const body = Buffer.allocUnsafe((node === undefined ? 0 : registerLength(node.length)) + client + s.payload.length);
  let o = 0;
  if (s.expiry !== undefined && node !== undefined) o = writeRegister(body, 0, s.expiry.at, s.expiry.version, node);
  if (clientFlags !== undefined) o = body.writeUInt32BE(clientFlags, o);
  s.payload.copy(body, o);
  return { flags, body };
}

/**
 * Reads a body (record.ts) with its epoch and flags, checking everything unless `trusted` (a record
 * of our own store): for anti-entropy the bytes come from a peer. Throws ProtocolError. `limits`
 * bounds a plain value as a client's would be.
 */
export function parseBody(epoch: Version, flags: number, body: Buffer, limits?: Limits, trusted = false): RecordState {
  const bad = (why: string): ProtocolError => new ProtocolError(`malformed record: ${why}`);
  if ((flags & ~KNOWN_FLAGS) !== 0) throw bad('unknown flags');
  const kind = kindOf(flags);
  if (kind !== KIND.plain && (flags & FLAG_TOMBSTONE) !== 0) throw bad('a tombstone has no kind');
  if (kind === KIND.member && (flags & FLAG_EXPIRY) !== 0) throw bad('a set member has no expiry of its own');
  let expiry: ExpiryRegister | undefined;
  let o = 0;
  if ((flags & FLAG_EXPIRY) !== 0) {
    const r = readRegister(body);
    if (r === undefined) throw bad('truncated expiry');
    expiry = { at: r.at, version: { wall: r.wall, counter: r.counter, node: checkEpochNode(r.node) } };
    o = r.end;
  }
  let clientFlags: number | undefined;
  if ((flags & FLAG_CLIENT_FLAGS) !== 0) {
    if (kind !== KIND.plain || (flags & FLAG_TOMBSTONE) !== 0) throw bad('only a value has client flags');
    if (body.length < o + CLIENT_FLAGS_BYTES) throw bad('truncated client flags');
    clientFlags = body.readUInt32BE(o);
    // Canonical: flags 0 are stored as none, so one state has one encoding (and one item hash).
    if (clientFlags === 0) throw bad('client flags 0 are stored as none');
    o += CLIENT_FLAGS_BYTES;
  }
  const payload = body.subarray(o);
  if ((flags & FLAG_TOMBSTONE) !== 0 && (payload.length > 0 || expiry !== undefined)) throw bad('a tombstone holds nothing');
  if (kind === KIND.counter && !trusted) decodeCounter(payload);
  else if (kind === KIND.member && !trusted) decodeMember(payload);
  else if (kind === KIND.set && payload.length > 0) throw bad('a set header holds nothing');
  else if (limits !== undefined && payload.length > limits.maxValueBytes) throw bad('value too large');
  return { epoch, flags: flags & ~(FLAG_EXPIRY | FLAG_CLIENT_FLAGS), expiry, ...(clientFlags === undefined ? {} : { clientFlags }), payload };
}

/**
 * parseBody's checks for a plain value or tombstone with no expiry register or client flags (flags 0
 * or FLAG_TOMBSTONE), made on its payload's length alone: a copied record is stored as it came, with no
 * state built (copy.ts). Throws ProtocolError.
 */
export function checkSimplePayload(flags: number, length: number, limits: Limits): void {
  if ((flags & FLAG_TOMBSTONE) !== 0 && length > 0) throw new ProtocolError('malformed record: a tombstone holds nothing');
  if (length > limits.maxValueBytes) throw new ProtocolError('malformed record: value too large');
}

/** The plain state a SET, SETEX, APPEND or DEL writes. */
export function plainState(epoch: Version, value: Buffer | undefined, expiresAt = 0): RecordState {
  if (value === undefined) return { epoch, flags: FLAG_TOMBSTONE, expiry: undefined, payload: EMPTY };
  return { epoch, flags: 0, expiry: expiresAt === 0 ? undefined : { at: expiresAt, version: epoch }, payload: value };
}

/** A state to write, and its encoding (flags byte and body, record.ts). */
export interface EncodedState {
  readonly state: RecordState;
  readonly flags: number;
  readonly body: Buffer;
}

/**
 * What merging `incoming` into the stored record `current` writes, or undefined if it changes nothing:
 * the incoming state if its epoch is newer (or nothing is stored), the merge if the epochs are equal.
 * Plain values of one epoch are one write, decided without decoding. The result is encoded once, and
 * compared with the stored bytes as they are (the store writes only canonical encodings).
 */
export function mergeInto(current: Buffer | undefined, incoming: RecordState): EncodedState | undefined {
  if (current === undefined) return encoded(incoming);
  const order = compareWithRecord(incoming.epoch, current);
  if (order > 0) return encoded(incoming);
  if (order < 0 || (isSimpleState(incoming) && isSimple(current))) return undefined;
  const merged = mergeStates(stateOf(current), incoming);
  const out = encoded(merged);
  const same = compareWithRecord(merged.epoch, current) === 0 && out.flags === recordFlags(current) && out.body.equals(recordBody(current));
  return same ? undefined : out;
}

function encoded(state: RecordState): EncodedState {
  const { flags, body } = encodeState(state);
  return { state, flags, body };
}

/** The join of two states of a key (see above). */
export function mergeStates(a: RecordState, b: RecordState): RecordState {
  const order = compareVersion(a.epoch, b.epoch);
  if (order !== 0) return order > 0 ? a : b;
  const ka = stateKind(a);
  const kb = stateKind(b);
  let body: RecordState;
  if (ka !== kb) body = ka > kb ? a : b;
  else if (ka === KIND.counter) body = { ...a, payload: encodeCounter(mergeCounters(decodeCounter(a.payload, true), decodeCounter(b.payload, true))) };
  else if (ka === KIND.member) body = { ...a, payload: encodeMember(mergeMembers(decodeMember(a.payload, true), decodeMember(b.payload, true))) };
  // Two plain states of one epoch are one write; the comparison only keeps a corrupted copy from
  // making the merge depend on the order.
  else body = Buffer.compare(a.payload, b.payload) >= 0 ? a : b;
  return { ...body, expiry: newerRegister(a.expiry, b.expiry) };
}

function newerRegister(a: ExpiryRegister | undefined, b: ExpiryRegister | undefined): ExpiryRegister | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  const order = compareVersion(a.version, b.version);
  return order > 0 || (order === 0 && a.at >= b.at) ? a : b;
}

/** The latest wall time of anything in the state: how old the newest news it carries is. */
export function newestWall(s: RecordState): number {
  let wall = Math.max(s.epoch.wall, s.expiry?.version.wall ?? 0);
  if (stateKind(s) === KIND.counter) wall = Math.max(wall, newestChange(decodeCounter(s.payload, true)));
  if (stateKind(s) === KIND.member) wall = Math.max(wall, newestMemberChange(decodeMember(s.payload, true)));
  return wall;
}

/** Whether the state reads as absent at `now`: a tombstone, or expired. */
export function isAbsentState(s: RecordState, now: number): boolean {
  return (s.flags & FLAG_TOMBSTONE) !== 0 || (s.expiry !== undefined && s.expiry.at !== 0 && s.expiry.at <= now);
}

/**
 * The epoch a counter or set made on an absent key takes: the zero epoch for a key never seen (or
 * purged), a tombstone's own, or after an expiry the one every node derives from the expired record.
 * So nodes that make the same thing at once share an epoch, and merge.
 */
export function epochOfAbsent(s: RecordState | undefined): Version {
  if (s === undefined) return ZERO_EPOCH;
  return (s.flags & FLAG_TOMBSTONE) !== 0 ? s.epoch : epochAfterExpiry(s);
}

/**
 * The epoch of whatever is made on a key after its record expired. Every node derives the same one
 * from the expired record, so two nodes incrementing a counter that has just expired merge their
 * increments: at the expiry time (or just after the old epoch), with the empty node id, which orders
 * it before any write made with a real node id at that millisecond.
 */
function epochAfterExpiry(s: RecordState): Version {
  const at = s.expiry?.at ?? 0;
  if (at > s.epoch.wall) return { wall: at, counter: 0, node: '' };
  return { wall: s.epoch.wall + 1, counter: 0, node: '' };
}

const EMPTY = Buffer.alloc(0);
