import { isUtf8 } from 'node:buffer';
import { isValidKey, isValidNodeId, isValidValue, maxMessageBytes, MAX_OPS_PER_MESSAGE, type Limits } from '../rules.js';
import { formatHlc, parseHlc, type Hlc } from '../store/hlc.js';

/*
 * Replication messages (DESIGN.md section 5): JSON that `mosquitto_sub -v` shows readably.
 *
 *   {"v":1,"node":"node-1","ops":[{"op":"set","key":"user:1","val":"alice","hlc":"0193a0b1c2d3-0000"},
 *                                  {"op":"del","key":"user:2","hlc":"0193a0b1c2d3-0001"}]}
 *
 * A value that is not valid UTF-8 travels as base64 with "enc":"b64". Every op of a message was written
 * by the message's node, so its version is (hlc, node).
 */
export const MESSAGE_VERSION = 1;

export interface Op {
  readonly key: Buffer;
  readonly hlc: Hlc;
  /** undefined for a delete (a tombstone). */
  readonly value: Buffer | undefined;
}

export interface Message {
  readonly node: string;
  readonly ops: Op[];
}

/** Encodes ops into messages of at most about `maxBytes` each (one op larger than that goes alone). */
export function encodeMessages(node: string, ops: readonly Op[], maxBytes: number): Buffer[] {
  const head = `{"v":${MESSAGE_VERSION},"node":${JSON.stringify(node)},"ops":[`;
  const out: Buffer[] = [];
  let parts: string[] = [];
  let size = head.length + 2;
  for (const op of ops) {
    const json = wireOp(op);
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
 * One op as JSON: {"op","key","val","enc","hlc"} in that order, as JSON.stringify would write the object,
 * built as text (a message may carry thousands of ops; no object per op).
 */
function wireOp(op: Op): string {
  const key = JSON.stringify(op.key.toString('utf8'));
  const hlc = formatHlc(op.hlc);
  if (op.value === undefined) return `{"op":"del","key":${key},"hlc":"${hlc}"}`;
  if (isUtf8(op.value)) return `{"op":"set","key":${key},"val":${JSON.stringify(op.value.toString('utf8'))},"hlc":"${hlc}"}`;
  return `{"op":"set","key":${key},"val":"${op.value.toString('base64')}","enc":"b64","hlc":"${hlc}"}`;
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
    const op = decodeOp(raw, limits);
    if (op === undefined) invalidOps++;
    else ops.push(op);
  }
  return { message: { node: doc.node, ops }, invalidOps };
}

function decodeOp(raw: unknown, limits: Limits): Op | undefined {
  if (!isObject(raw) || typeof raw.key !== 'string' || typeof raw.hlc !== 'string') return undefined;
  const hlc = parseHlc(raw.hlc);
  const key = Buffer.from(raw.key, 'utf8');
  if (hlc === undefined || !isValidKey(key, limits)) return undefined;
  if (raw.op === 'del') return { key, hlc, value: undefined };
  if (raw.op !== 'set' || typeof raw.val !== 'string') return undefined;
  let value: Buffer;
  if (raw.enc === 'b64') value = Buffer.from(raw.val, 'base64');
  else if (raw.enc === undefined) value = Buffer.from(raw.val, 'utf8');
  else return undefined;
  return isValidValue(value, limits) ? { key, hlc, value } : undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
