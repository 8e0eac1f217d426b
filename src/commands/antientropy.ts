import {
  parseGet,
  parseNodes,
  parsePut,
  parseRoot,
  type AeGetRequest,
  type AeNodesRequest,
  type AePutRequest,
  type AeRootRequest,
} from '../antientropy/requests.js';
import { getReply, nodesReply, rootReply } from '../antientropy/serve.js';
import type { Output } from '../protocol/output.js';
import type { Command, Context } from './context.js';

/*
 * The internal commands a node's anti-entropy sends to a peer's client port (docs/ARCHITECTURE.md,
 * "Anti-entropy"); their lines are encoded and parsed in antientropy/requests.ts. They are limited like
 * client commands: one line each, at most MAX_BATCH nodes or key hashes per request, replies capped in size.
 */

export const aeRoot = {
  names: ['AE.ROOT'],
  access: 'peer',
  requires: 'a secret fingerprint and the segment bits',
  parse: parseRoot,
  execute(req: AeRootRequest, ctx: Context, out: Output): undefined {
    out.utf8Line(rootReply(ctx.store, ctx.nodeId, req.fingerprint, req.bits));
  },
} as const satisfies Command<AeRootRequest>;

export const aeNodes = {
  names: ['AE.NODES'],
  access: 'peer',
  requires: 'a depth, a window offset and base64 node indices',
  parse: parseNodes,
  execute(req: AeNodesRequest, ctx: Context, out: Output): undefined {
    out.binary(nodesReply(ctx.store, req.depth, req.offset, req.indices));
  },
} as const satisfies Command<AeNodesRequest>;

export const aeGet = {
  names: ['AE.GET'],
  access: 'peer',
  requires: 'base64 key hashes',
  parse: parseGet,
  execute(req: AeGetRequest, ctx: Context, out: Output): undefined {
    const payload = getReply(ctx.store, req.keyHashes);
    ctx.stats.antiEntropyServed += req.keyHashes.length;
    out.binary(payload);
  },
} as const satisfies Command<AeGetRequest>;

export const aePut = {
  names: ['AE.PUT'],
  access: 'peer',
  requires: 'a key, a version, a node id and d, r <value> or b <base64>; or a key and x <base64 record>',
  parse: parsePut,
  execute(req: AePutRequest, ctx: Context, out: Output): undefined {
    // The line is reused once the batch is answered: the store copies what it keeps into its record.
    const done = ctx.store.applyRemote(req.key, req.state);
    if (done !== undefined) ctx.stats.antiEntropyApplied++;
    out.line('OK');
    out.dependOn(done ?? null);
  },
} as const satisfies Command<AePutRequest>;

