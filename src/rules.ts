import { isUtf8 } from 'node:buffer';
import { ProtocolError } from './errors.js';

/*
 * The input rules, in one place (DESIGN.md sections 2, 3 and 5). What a key, a value and a node id may
 * be, and how much the broker may hand us. The client protocol, replication, anti-entropy, records and
 * the config all check through here, so a record that one path accepts can always travel by another:
 * a node id or key is a single word on an AE.PUT line, a length byte in a record, a JSON string.
 */

export interface Limits {
  readonly maxKeyBytes: number;
  readonly maxValueBytes: number;
}

/** A node id's bytes are stored behind one length byte (store/record.ts). */
export const MAX_NODE_ID_BYTES = 255;

/** Ops in one replication message; ours hold at most a few thousand (256 KiB of the smallest ops). */
export const MAX_OPS_PER_MESSAGE = 10_000;

/**
 * The largest replication message accepted from the broker. One op may be alone in a message larger than
 * the usual 256 KiB, and JSON may write a value byte as six (`\u0001`).
 */
export function maxMessageBytes(limits: Limits): number {
  return 6 * (limits.maxValueBytes + limits.maxKeyBytes) + 64 * 1024;
}

/**
 * Why `key` is not a key, or undefined if it is one: 1..maxKeyBytes bytes of UTF-8 with no space or
 * control character (DESIGN.md section 2). `inCheckedLine`: the key is a word of a request line whose
 * UTF-8 was checked whole (protocol/decode.ts), so the hot path does not check it twice.
 */
export function keyProblem(key: Buffer, maxKeyBytes: number, inCheckedLine = false): string | undefined {
  if (key.length === 0) return 'invalid key: empty';
  if (key.length > maxKeyBytes) return `key too long (${key.length} bytes, the limit is ${maxKeyBytes})`;
  const bad = wordBreaker(key);
  if (bad === 0x20) return 'invalid key: spaces are not allowed';
  if (bad !== -1) return 'invalid key: control characters are not allowed';
  return inCheckedLine || isUtf8(key) ? undefined : 'invalid key: not UTF-8';
}

/** The key, or a ProtocolError saying what is wrong with it. */
export function checkKey(key: Buffer, limits: Limits, inCheckedLine = false): Buffer {
  const problem = keyProblem(key, limits.maxKeyBytes, inCheckedLine);
  if (problem !== undefined) throw new ProtocolError(problem);
  return key;
}

export function isValidKey(key: Buffer, limits: Limits): boolean {
  return keyProblem(key, limits.maxKeyBytes) === undefined;
}

/** Values are any bytes up to maxValueBytes. */
export function checkValue(value: Buffer, limits: Limits): Buffer {
  if (value.length > limits.maxValueBytes) {
    throw new ProtocolError(`value too large (${value.length} bytes, the limit is ${limits.maxValueBytes})`);
  }
  return value;
}

export function isValidValue(value: Buffer, limits: Limits): boolean {
  return value.length <= limits.maxValueBytes;
}

/**
 * Why `id` is not a node id, or undefined if it is one: 1..255 bytes of UTF-8 with no space or control
 * character. What config accepts for `node_id` is exactly what every other path accepts.
 */
export function nodeIdProblem(id: string | Buffer): string | undefined {
  const bytes = typeof id === 'string' ? Buffer.from(id, 'utf8') : id;
  if (bytes.length === 0) return 'is empty';
  if (bytes.length > MAX_NODE_ID_BYTES) return `is ${bytes.length} bytes long (at most ${MAX_NODE_ID_BYTES})`;
  if (wordBreaker(bytes) !== -1) return 'contains a space or a control character';
  // A string always encodes to UTF-8; its lone surrogates become U+FFFD, which would change the id.
  if (typeof id === 'string' ? bytes.toString('utf8') !== id : !isUtf8(bytes)) return 'is not valid UTF-8';
  return undefined;
}

export function isValidNodeId(id: string | Buffer): boolean {
  return nodeIdProblem(id) === undefined;
}

/** The node id in `bytes`, or a ProtocolError (for ids that arrive from peers). */
export function checkNodeId(bytes: Buffer): string {
  const problem = nodeIdProblem(bytes);
  if (problem !== undefined) throw new ProtocolError(`invalid node id: it ${problem}`);
  return bytes.toString('utf8');
}

/**
 * The node id of an epoch (store/state.ts) in `bytes`: a node id, or empty for the zero epoch of a
 * counter or set made from nothing and the epoch that follows an expiry.
 */
export function checkEpochNode(bytes: Buffer): string {
  return bytes.length === 0 ? '' : checkNodeId(bytes);
}

/** A single word of a request line: not empty, no space or control character (user names in AUTH). */
export function isWord(text: string): boolean {
  return text !== '' && wordBreaker(Buffer.from(text, 'utf8')) === -1;
}

/**
 * An anti-entropy peer's address, `host:port` or `[v6]:port`, or a RangeError: what the config accepts in
 * `anti_entropy.peer_list` is what anti-entropy connects to.
 */
export function parsePeer(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address);
  const port = Number(m?.[3]);
  if (m === null || port < 1 || port > 65535) throw new RangeError(`peer address must be host:port, got '${address}'`);
  return { host: (m[1] ?? m[2]) as string, port };
}

/** The first byte that would split or break a word (space or control character), or -1. */
function wordBreaker(bytes: Buffer): number {
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i] as number;
    if (b <= 0x20 || b === 0x7f) return b;
  }
  return -1;
}
