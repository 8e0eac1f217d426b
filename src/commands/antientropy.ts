import {
  parseDiff,
  parseGet,
  parsePut,
  parseRange,
  parseRoot,
  parseScan,
  type AeDiffRequest,
  type AeGetRequest,
  type AePutRequest,
  type AeRangeRequest,
  type AeScanRequest,
  type AeRootRequest,
} from '../antientropy/requests.js';
import { answerDiff } from '../antientropy/reconcile.js';
import { getReply, rootReply } from '../antientropy/serve.js';
import { encodeDiff } from '../antientropy/diff.js';
import { rangeReply, scanReply } from '../antientropy/stream.js';
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

export const aeDiff = {
  names: ['AE.DIFF'],
  access: 'peer',
  requires: 'a window offset, a list maximum, a window width and base64 entries',
  parse: parseDiff,
  execute(req: AeDiffRequest, ctx: Context, out: Output): undefined {
    const answer = answerDiff(ctx.store, req.offset, req.listMax, req.width, req.entries);
    for (const e of answer) if (e.kind === 'records') ctx.stats.antiEntropyServed += e.records.length;
    out.binary(encodeDiff(answer));
  },
} as const satisfies Command<AeDiffRequest>;

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


export const aeRange = {
  names: ['AE.RANGE'],
  access: 'peer',
  requires: 'a base64 index key to start from and a hex key hash to stop before (or -)',
  parse: parseRange,
  execute(req: AeRangeRequest, ctx: Context, out: Output): undefined {
    out.binary(rangeReply(ctx.store, req.from, req.to));
  },
} as const satisfies Command<AeRangeRequest>;

export const aeScan = {
  names: ['AE.SCAN'],
  access: 'peer',
  requires: 'a base64 key to start from',
  parse: parseScan,
  execute(req: AeScanRequest, ctx: Context, out: Output): undefined {
    out.binary(scanReply(ctx.store, req.from));
  },
} as const satisfies Command<AeScanRequest>;
