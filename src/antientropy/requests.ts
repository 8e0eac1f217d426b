import { isUtf8 } from 'node:buffer';
import { ProtocolError } from '../errors.js';
import type { Args } from '../protocol/args.js';
import { checkNodeId, checkValue } from '../rules.js';
import { formatHlc, parseHlc, type Version } from '../hlc.js';
import { checkKeyKind, encodeState, encodeTransfer, FLAG_TOMBSTONE, isSimpleState, memberKey, memberProblem, parseBody, plainState, type RecordState, splitMemberKey } from '../store/index.js';
import { decodeDiff, encodeDiff, MAX_ENTRIES, MAX_LISTED, WINDOW, type DiffEntry } from './diff.js';
import { MAX_BATCH, Reader, type WireRecord } from './wire.js';

/*
 * The requests anti-entropy sends to a peer's client port, one line each, and the text replies to them:
 * each encoded (by the initiator) and parsed (by the answering node's commands) here and nowhere else.
 * Binary replies are in wire.ts (AE.GET), diff.ts (AE.DIFF) and stream.ts (AE.RANGE, AE.SCAN); their framing
 * on the socket in replies.ts.
 *
 *   AE.HELLO <cn> <protocol version>      -> AE.CHALLENGE <sn> <sp>     (handshake.ts)
 *   AE.PROVE <cp>                         -> OK
 *   AE.ROOT <fingerprint> <bits>          -> ROOT <hex root> <node id>
 *   AE.DIFF <offset> <list max> <base64 entries>      -> BIN frame   (diff.ts)
 *   AE.GET <base64 8-byte key hashes>     -> BIN frame
 *   AE.RANGE <base64 index key> <hex 8-byte key hash | ->   -> BIN frame   (stream.ts)
 *   AE.SCAN <base64 key>                  -> BIN frame   (stream.ts)
 *   AE.PUT <key> <hlc> <node> d | r <value> | b <base64>   -> OK    (a plain value or tombstone)
 *   AE.PUT <key> x <base64 record>        -> OK    (any other record: flags, epoch, body as AE.GET sends them)
 *   AE.PUT <key> m <member> <base64 record> -> OK  (a set member's record, as x)
 */

export interface AeHelloRequest {
  readonly kind: 'ae.hello';
  readonly cn: string;
}

export interface AeScanRequest {
  readonly kind: 'ae.scan';
  /** The key to start from. */
  readonly from: Buffer;
}

export interface AeRangeRequest {
  readonly kind: 'ae.range';
  /** The index key to start from (a key hash, or a key hash and a key). */
  readonly from: Buffer;
  /** The key hash to stop before; undefined: the end of the order. */
  readonly to: Buffer | undefined;
}

export interface AeProveRequest {
  readonly kind: 'ae.prove';
  readonly proof: string;
}

export interface AeRootRequest {
  readonly kind: 'ae.root';
  readonly fingerprint: string;
  readonly bits: number;
}

export interface AeDiffRequest {
  readonly kind: 'ae.diff';
  /** Where in each 16-byte sum the windows are taken. */
  readonly offset: number;
  /** A node below the in-memory tree with at most this many records is listed rather than split. */
  readonly listMax: number;
  /** Bytes of each sum the answer's windows take. */
  readonly width: number;
  readonly entries: DiffEntry[];
}

export interface AeGetRequest {
  readonly kind: 'ae.get';
  readonly keyHashes: Buffer[];
}

export interface AePutRequest {
  readonly kind: 'ae.put';
  readonly key: Buffer;
  readonly state: RecordState;
}

/** Every anti-entropy request, as the answering node's commands receive it. */
export type AntiEntropyRequest = AeHelloRequest | AeProveRequest | AeRootRequest | AeDiffRequest | AeGetRequest | AePutRequest | AeRangeRequest | AeScanRequest;

/**
 * The anti-entropy protocol this build speaks, named in AE.HELLO: a peer that speaks another refuses
 * the handshake with an error that says so, rather than misreading a request. 1: the releases before
 * AE.RANGE (their AE.HELLO named no version); 2: AE.DIFF without a window width or records in its answers.
 */
export const AE_PROTOCOL_VERSION = 3;

export const NONCE_BYTES = 16;
export const MAC_BYTES = 32;

/** Whether `text` is exactly `bytes` bytes in lower-case hex. */
export function isHex(text: string, bytes: number): boolean {
  return text.length === 2 * bytes && /^[0-9a-f]+$/.test(text);
}

// ---- the initiator's side: request lines, and the text replies it reads ----

export const helloLine = (cn: string): string => `AE.HELLO ${cn} ${AE_PROTOCOL_VERSION}`;
export const proveLine = (cp: string): string => `AE.PROVE ${cp}`;
export const rootLine = (fingerprint: string, bits: number): string => `AE.ROOT ${fingerprint} ${bits}`;
export const diffLine = (offset: number, listMax: number, width: number, entries: readonly DiffEntry[]): string =>
  `AE.DIFF ${offset} ${listMax} ${width} ${encodeDiff(entries).toString('base64')}`;
export const getLine = (keyHashes: readonly Buffer[]): string => `AE.GET ${Buffer.concat(keyHashes).toString('base64')}`;
export const scanLine = (from: Buffer): string => `AE.SCAN ${from.toString('base64')}`;
export const rangeLine = (from: Buffer, to: Buffer | undefined): string => `AE.RANGE ${from.toString('base64')} ${to === undefined ? '-' : to.toString('hex')}`;

/**
 * One record pushed to a peer as an `AE.PUT` line: `... d` for a tombstone, `... r <value>` for a value
 * that can travel as it is, `... b <base64>` for any other value; `x <base64>` for any other record
 * (a counter, a record with an expiry, the zero epoch). The value is copied into the line.
 */
export function putLine(rec: WireRecord): Buffer {
  const { state } = rec;
  const parts = splitMemberKey(rec.key);
  if (!isSimpleState(state) || state.epoch.node === '' || parts !== undefined) {
    const { flags, body } = encodeState(state);
    const frame = encodeTransfer(flags, state.epoch, body, false);
    const target = parts === undefined ? `${rec.key.toString('utf8')} x` : `${parts.setKey.toString('utf8')} m ${parts.member.toString('utf8')}`;
    return Buffer.from(`AE.PUT ${target} ${frame.toString('base64')}\r\n`);
  }
  const head = `AE.PUT ${rec.key.toString('utf8')} ${formatHlc(state.epoch)} ${state.epoch.node} `;
  if (state.flags === FLAG_TOMBSTONE) return Buffer.from(`${head}d\r\n`);
  if (lineSafe(state.payload)) return Buffer.concat([Buffer.from(`${head}r `), state.payload, CRLF]);
  return Buffer.from(`${head}b ${state.payload.toString('base64')}\r\n`);
}

/** The peer's `AE.CHALLENGE <sn> <sp>`: its nonce and its proof, both hex of the right length. */
export function parseChallenge(line: string): { sn: string; sp: string } | undefined {
  const [word, sn, sp, extra] = line.split(' ');
  if (word !== 'AE.CHALLENGE' || sn === undefined || sp === undefined || extra !== undefined) return undefined;
  return isHex(sn, NONCE_BYTES) && isHex(sp, MAC_BYTES) ? { sn, sp } : undefined;
}

/** The peer's `ROOT <hex> <node id>`. */
export function parseRootReply(line: string): { root: string; peer: string } {
  const [word, root, peer, extra] = line.split(' ');
  if (word !== 'ROOT' || root === undefined || !/^[0-9a-f]+$/.test(root) || peer === undefined || extra !== undefined) {
    throw new ProtocolError('malformed AE.ROOT reply');
  }
  return { root, peer: checkNodeId(Buffer.from(peer, 'utf8')) };
}

// ---- the answering side: replies it writes, and the requests' parsers (the commands call these) ----

export const challengeLine = (sn: string, sp: string): string => `AE.CHALLENGE ${sn} ${sp}`;
export const rootReplyLine = (root: string, nodeId: string): string => `ROOT ${root} ${nodeId}`;

export function parseHello(args: Args): AeHelloRequest {
  const cn = args.word()?.toString('latin1');
  const version = args.word()?.toString('latin1');
  if (cn === undefined) throw args.usage();
  args.end();
  if (!isHex(cn, NONCE_BYTES)) throw new ProtocolError(`AE.HELLO nonce must be ${NONCE_BYTES} bytes in lower-case hex`);
  if (version !== String(AE_PROTOCOL_VERSION)) {
    const theirs = version === undefined ? '1 (an older release)' : JSON.stringify(version.slice(0, 16));
    throw new ProtocolError(`anti-entropy protocol ${theirs} is not spoken here: this node speaks ${AE_PROTOCOL_VERSION}; upgrade the older node`);
  }
  return { kind: 'ae.hello', cn };
}

export function parseScan(args: Args): AeScanRequest {
  const fromWord = args.word();
  args.end();
  if (fromWord === undefined) throw args.usage();
  const from = Buffer.from(fromWord.toString('latin1'), 'base64');
  if (from.length === 0) throw new ProtocolError('AE.SCAN start must be a key, base64');
  return { kind: 'ae.scan', from };
}

export function parseRange(args: Args): AeRangeRequest {
  const fromWord = args.word();
  const toWord = args.word()?.toString('latin1');
  args.end();
  if (fromWord === undefined || toWord === undefined) throw args.usage();
  const from = Buffer.from(fromWord.toString('latin1'), 'base64');
  if (from.length < 8) throw new ProtocolError('AE.RANGE start must be at least 8 bytes, base64');
  if (toWord !== '-' && !isHex(toWord, 8)) throw new ProtocolError('AE.RANGE end must be 8 bytes in lower-case hex, or -');
  return { kind: 'ae.range', from, to: toWord === '-' ? undefined : Buffer.from(toWord, 'hex') };
}

export function parseProve(args: Args): AeProveRequest {
  const proof = args.word()?.toString('latin1');
  if (proof === undefined) throw args.usage();
  args.end();
  return { kind: 'ae.prove', proof };
}

export function parseRoot(args: Args): AeRootRequest {
  const fingerprint = args.word()?.toString('latin1');
  const bits = smallInt(args.word());
  if (fingerprint === undefined || bits === undefined) throw args.usage();
  args.end();
  return { kind: 'ae.root', fingerprint, bits };
}

export function parseDiff(args: Args): AeDiffRequest {
  const offset = smallInt(args.word());
  const listMax = smallInt(args.word());
  const width = smallInt(args.word());
  const word = args.word();
  args.end();
  if (offset === undefined || listMax === undefined || width === undefined || word === undefined) throw args.usage();
  if (offset > 16 - WINDOW) throw new ProtocolError(`offset must be 0..${16 - WINDOW}`);
  if (listMax < 1 || listMax > MAX_LISTED) throw new ProtocolError(`list max must be 1..${MAX_LISTED}`);
  if (width < 1 || width > WINDOW) throw new ProtocolError(`window width must be 1..${WINDOW}`);
  const entries = decodeDiff(Buffer.from(word.toString('latin1'), 'base64'), undefined, MAX_ENTRIES);
  if (entries.length === 0 || entries.length > MAX_ENTRIES) throw new ProtocolError(`AE.DIFF takes 1..${MAX_ENTRIES} entries`);
  return { kind: 'ae.diff', offset, listMax, width, entries };
}

export function parseGet(args: Args): AeGetRequest {
  const packed = packedList(args, 8);
  const keyHashes: Buffer[] = [];
  for (let i = 0; i < packed.length; i += 8) keyHashes.push(packed.subarray(i, i + 8));
  return { kind: 'ae.get', keyHashes };
}

export function parsePut(args: Args): AePutRequest {
  let key = args.key();
  const first = args.word();
  const form = first?.toString('latin1');
  if (form === 'x' || form === 'm') {
    if (form === 'm') {
      const member = args.key();
      const problem = memberProblem(key, member, args.limits);
      if (problem !== undefined) throw new ProtocolError(problem);
      key = memberKey(key, member);
    }
    const packed = args.word();
    args.end();
    if (packed === undefined) throw args.usage();
    const r = new Reader(Buffer.from(packed.toString('latin1'), 'base64'));
    const { flags, epoch, body } = r.record(false);
    const state = parseBody(epoch, flags, body, args.limits);
    checkKeyKind(key, state);
    return { kind: 'ae.put', key, state };
  }
  const version = parseVersionWord(first, args.word());
  const enc = args.word()?.toString('latin1');
  let value: Buffer | undefined;
  if (enc === 'd') {
    args.end();
  } else if (enc === 'r') {
    value = checkValue(args.rest(), args.limits);
  } else if (enc === 'b') {
    const text = args.word();
    args.end();
    value = checkValue(Buffer.from(text?.toString('latin1') ?? '', 'base64'), args.limits);
  } else {
    throw args.usage();
  }
  return { kind: 'ae.put', key, state: plainState(version, value) };
}

export function parseVersionWord(word: Buffer | undefined, node: Buffer | undefined): Version {
  const hlc = word === undefined ? undefined : parseHlc(word.toString('latin1'));
  if (hlc === undefined || node === undefined) throw new ProtocolError('invalid version');
  return { wall: hlc.wall, counter: hlc.counter, node: checkNodeId(node) };
}

/** A base64 word of fixed-size items: at most MAX_BATCH of them, at least one. */
function packedList(args: Args, itemBytes: number): Buffer {
  const word = args.word();
  args.end();
  if (word === undefined) throw args.usage();
  const packed = Buffer.from(word.toString('latin1'), 'base64');
  if (packed.length === 0 || packed.length % itemBytes !== 0 || packed.length / itemBytes > MAX_BATCH) {
    throw new ProtocolError(`${args.command} takes 1..${MAX_BATCH} items of ${itemBytes} bytes, base64`);
  }
  return packed;
}

function smallInt(word: Buffer | undefined): number | undefined {
  if (word === undefined || word.length === 0 || word.length > 6) return undefined;
  const text = word.toString('latin1');
  return /^[0-9]+$/.test(text) ? Number(text) : undefined;
}

/** A value survives a request line unchanged: no line break, no blank at either end, valid UTF-8. */
function lineSafe(v: Buffer): boolean {
  if (v.length === 0) return false;
  const first = v[0] as number;
  const last = v[v.length - 1] as number;
  if (first === 0x20 || first === 0x09 || last === 0x20 || last === 0x09) return false;
  return v.indexOf(0x0a) === -1 && v.indexOf(0x0d) === -1 && isUtf8(v);
}

const CRLF = Buffer.from('\r\n');
