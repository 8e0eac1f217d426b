import type { Version } from '../hlc.js';
import { recordBody, recordFlags, recordVersionOf } from './record.js';

/*
 * A record as it travels between peers (anti-entropy's AE.GET replies and AE.PUT x lines): the fields
 * a receiver cannot compute itself, framed as
 *   u8 flags, epoch wall (6), counter (2), u8 node id length, node id, [u32 body length,] body
 * The format byte, item hash and key hash stay behind: the receiver hashes what it stores.
 */

/** A transfer frame's fields; `node` as sent (UTF-8 bytes, unchecked), `body` a view. */
export interface TransferFields {
  readonly flags: number;
  readonly wall: number;
  readonly counter: number;
  readonly node: Buffer;
  readonly body: Buffer;
}

/** Frames flags, epoch and body for transfer; `sized`: the body carries its length (several frames follow each other). */
export function encodeTransfer(flags: number, epoch: Version, body: Buffer, sized: boolean): Buffer {
  const node = Buffer.from(epoch.node, 'utf8');
  const head = 1 + 6 + 2 + 1 + node.length;
  const buf = Buffer.allocUnsafe(head + (sized ? 4 : 0) + body.length);
  buf[0] = flags;
  buf.writeUInt16BE(Math.floor(epoch.wall / 2 ** 32), 1);
  buf.writeUInt32BE(epoch.wall >>> 0, 3);
  buf.writeUInt16BE(epoch.counter, 7);
  buf[9] = node.length;
  node.copy(buf, 10);
  let o = head;
  if (sized) o = buf.writeUInt32BE(body.length, o);
  body.copy(buf, o);
  return buf;
}

/** The transfer frame of a stored record (see encodeTransfer). */
export function transferOf(rec: Buffer, sized: boolean): Buffer {
  return encodeTransfer(recordFlags(rec), recordVersionOf(rec), recordBody(rec), sized);
}

/**
 * Reads a transfer frame at `o` of `buf` (from a peer: nothing trusted); returns its fields and where
 * it ends, or throws RangeError if it is cut short. Without `sized` the body is the rest of `buf`.
 */
export function decodeTransfer(buf: Buffer, o: number, sized: boolean): { fields: TransferFields; end: number } {
  const cut = (): RangeError => new RangeError('truncated record');
  if (buf.length < o + 10) throw cut();
  const nodeEnd = o + 10 + (buf[o + 9] as number);
  const bodyAt = nodeEnd + (sized ? 4 : 0);
  if (buf.length < bodyAt) throw cut();
  const end = sized ? bodyAt + buf.readUInt32BE(nodeEnd) : buf.length;
  if (buf.length < end) throw cut();
  const fields = {
    flags: buf[o] as number,
    wall: buf.readUInt16BE(o + 1) * 2 ** 32 + buf.readUInt32BE(o + 3),
    counter: buf.readUInt16BE(o + 7),
    node: buf.subarray(o + 10, nodeEnd),
    body: buf.subarray(bodyAt, end),
  };
  return { fields, end };
}
