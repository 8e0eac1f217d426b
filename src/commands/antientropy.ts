import { getReply, nodesReply, rootReply } from '../antientropy/serve.js';
import { MAX_BATCH, parseVersionWord } from '../antientropy/wire.js';
import { ProtocolError } from '../errors.js';
import type { Args } from '../protocol/args.js';
import { checkValue } from '../rules.js';
import type { Output } from '../protocol/output.js';
import type { Version } from '../store/hlc.js';
import type { Command, Context } from './context.js';

/*
 * The internal commands a node's anti-entropy sends to a peer's client port (docs/ARCHITECTURE.md,
 * "Anti-entropy"). They are limited like client commands: one line each, at most MAX_BATCH nodes or
 * key hashes per request, replies capped in size.
 */

export interface AeRootRequest {
  readonly kind: 'ae.root';
  readonly fingerprint: string;
  readonly bits: number;
}

export interface AeNodesRequest {
  readonly kind: 'ae.nodes';
  readonly depth: number;
  readonly offset: number;
  readonly indices: number[];
}

export interface AeGetRequest {
  readonly kind: 'ae.get';
  readonly keyHashes: Buffer[];
}

export interface AePutRequest {
  readonly kind: 'ae.put';
  readonly key: Buffer;
  readonly version: Version;
  /** undefined: a tombstone. */
  readonly value: Buffer | undefined;
}

export type AntiEntropyRequest = AeRootRequest | AeNodesRequest | AeGetRequest | AePutRequest;

export const aeRoot = {
  names: ['AE.ROOT'],
  access: 'peer',
  requires: 'a secret fingerprint and the segment bits',
  parse(args: Args): AeRootRequest {
    const fingerprint = args.word()?.toString('latin1');
    const bits = smallInt(args.word());
    if (fingerprint === undefined || bits === undefined) throw args.usage();
    args.end();
    return { kind: 'ae.root', fingerprint, bits };
  },
  run(req: AeRootRequest, ctx: Context, out: Output): undefined {
    out.utf8Line(rootReply(ctx.store, ctx.nodeId, req.fingerprint, req.bits));
  },
} as const satisfies Command<AeRootRequest>;

export const aeNodes = {
  names: ['AE.NODES'],
  access: 'peer',
  requires: 'a depth, a window offset and base64 node indices',
  parse(args: Args): AeNodesRequest {
    const depth = smallInt(args.word());
    const offset = smallInt(args.word());
    const packed = packedList(args, 4);
    if (depth === undefined || offset === undefined) throw args.usage();
    const indices: number[] = [];
    for (let i = 0; i < packed.length; i += 4) indices.push(packed.readUInt32BE(i));
    return { kind: 'ae.nodes', depth, offset, indices };
  },
  run(req: AeNodesRequest, ctx: Context, out: Output): undefined {
    out.binary(nodesReply(ctx.store, req.depth, req.offset, req.indices));
  },
} as const satisfies Command<AeNodesRequest>;

export const aeGet = {
  names: ['AE.GET'],
  access: 'peer',
  requires: 'base64 key hashes',
  parse(args: Args): AeGetRequest {
    const packed = packedList(args, 8);
    const keyHashes: Buffer[] = [];
    for (let i = 0; i < packed.length; i += 8) keyHashes.push(packed.subarray(i, i + 8));
    return { kind: 'ae.get', keyHashes };
  },
  run(req: AeGetRequest, ctx: Context, out: Output): undefined {
    const payload = getReply(ctx.store, req.keyHashes);
    ctx.stats.antiEntropyServed += req.keyHashes.length;
    out.binary(payload);
  },
} as const satisfies Command<AeGetRequest>;

export const aePut = {
  names: ['AE.PUT'],
  access: 'peer',
  requires: 'a key, a version, a node id and d, r <value> or b <base64>',
  parse(args: Args): AePutRequest {
    const key = args.key();
    const version = parseVersionWord(args.word(), args.word());
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
    return { kind: 'ae.put', key, version, value };
  },
  run(req: AePutRequest, ctx: Context, out: Output): undefined {
    // The line is reused once the batch is answered: the store copies what it keeps into its record.
    const done = ctx.store.applyRemote(req.key, req.version, req.value);
    if (done !== undefined) ctx.stats.antiEntropyApplied++;
    out.line('OK');
    out.dependOn(done ?? null);
  },
} as const satisfies Command<AePutRequest>;

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
