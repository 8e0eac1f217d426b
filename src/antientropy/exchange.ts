import { randomInt } from 'node:crypto';
import { ProtocolError, SelfPeerError } from '../errors.js';
import { expected } from '../expected.js';
import type { Limits } from '../rules.js';
import { recordKeyHashBytes, type Store } from '../store/index.js';
import { decodeDiff, FIRST_WINDOW, MAX_ENTRIES, nodeRange, WINDOW, type DiffEntry } from './diff.js';
import type { PeerClient } from './peer.js';
import { isZero, NodeRecords, sumsBelow, windowsOf } from './nodes.js';
import { compareHashes, compareListing, describe, type KeyRepairs } from './reconcile.js';
import { apply as applyRecords, pull, push, sendBatches } from './repairs.js';
import { diffLine, parseRootReply, rootLine } from './requests.js';
import { copyAll, FIRST_KEY, LANES, pullRanges, type HashRange, type StreamProgress } from './stream.js';

export interface ExchangeResult {
  /** The peer's node id. */
  readonly peer: string;
  /** The roots were equal at the first comparison: nothing else was sent (unless the exchange was full). */
  readonly equal: boolean;
  readonly roundTrips: number;
  /** Tree nodes whose children were compared. */
  readonly nodesCompared: number;
  /** Records pushed to the peer, and records pulled from it that were newer here and applied. */
  readonly keysSent: number;
  readonly keysReceived: number;
  /** Descents made (0 when the roots were equal). */
  readonly passes: number;
  /** The roots were equal at the end. False after MAX_PASSES when writes kept coming meanwhile. */
  readonly converged: boolean;
  /** Records copied by streaming ranges empty here (included in keysReceived when they changed something). */
  readonly streamed: number;
}

export interface ExchangeOptions {
  readonly nodeId: string;
  readonly limits: Limits;
  /** Copy every record the peer holds, streamed, before comparing (SYNC --full). */
  readonly full?: boolean;
  /** Repairs held before they are sent in the middle of a descent (default REPAIR_BATCH). */
  readonly repairBatch?: number;
  /** Told after each streamed frame. */
  readonly onStream?: (progress: Readonly<StreamProgress>) => void;
  /**
   * Where a copy of the whole store from each peer (by node id) was cut short: the next exchange with
   * that peer resumes it there. Kept by the caller across exchanges.
   */
  readonly copies?: {
    get(peer: string): Buffer | undefined;
    set(peer: string, resume: Buffer): unknown;
    delete(peer: string): unknown;
  };
}

/** Passes one exchange may make when the roots still differ after a pass (see diff.ts, WINDOW). */
const MAX_PASSES = 3;
/** Nodes that may differ at once in a descent before the peer is taken to be lying (2^20 segments at most). */
const MAX_FRONTIER = 1 << 20;
/** Repairs held before they are sent in the middle of a descent. */
const REPAIR_BATCH = 16_384;
/**
 * A node below the in-memory tree is listed rather than split when it holds at most this many records:
 * more while few nodes differ (a listing now saves a round trip), few when many do (a listing entry
 * costs as much as a level of windows once a node holds a handful).
 */
const LIST_SPARSE = 32;
const LIST_DENSE = 4;
/** A store with more records than this starts a descent two levels down (256 windows, not 16). */
const TWO_LEVELS_FROM = 4096;
/**
 * A step of a first pass that describes at least this many nodes takes one byte of each sum, and asks
 * the peer for one-byte windows too: there, halving the windows saves more than the second pass costs
 * that the one in 256 of them that hide a difference call for. Fewer nodes take two bytes.
 */
const DENSE_NODES = 256;

/**
 * One anti-entropy exchange, run by the initiating side (DESIGN.md section 6). The first request of a
 * descent (AE.DIFF, diff.ts) goes out with AE.ROOT, in the same round trip: this node's windows of the
 * tree two levels down (one for a small store). The peer compares them with its own and answers its
 * view of each node that differs one level further down; this node compares that and answers in turn,
 * so each message goes a level deeper. A small node below the in-memory tree is listed (key hash,
 * epoch, item window) instead, and whoever gets a listing decides key by key what moves. A node empty
 * here is streamed from the peer (stream.ts); an empty node, SYNC --full or a copy cut short copies the
 * peer's whole store first. Then the records found newer there are pulled and ours pushed, and the
 * peer's root asked for again in the same round trip. Both sides apply through the store's merge, so an
 * exchange is idempotent. If the roots still differ (writes meanwhile, or a window that hid a
 * difference) another pass runs, at most MAX_PASSES in all.
 */
export async function exchange(store: Store, peer: PeerClient, opts: ExchangeOptions): Promise<ExchangeResult> {
  const { nodeId, limits } = opts;
  const ask = rootLine(store.secretFingerprint, store.merkle.bits);
  const rootReply = peer.line(ask);
  // Sent before the root's answer: between equal replicas it costs bytes, not a round trip.
  let first = startDescent(store, peer);
  let theirs = parseRoot(await rootReply, nodeId);
  const result = { peer: theirs.peer, equal: false, roundTrips: 1, nodesCompared: 0, keysSent: 0, keysReceived: 0, passes: 0, streamed: 0 };
  const equalRoots = theirs.root === store.rootHash().toString('hex');
  if (equalRoots && !opts.full) return { ...result, equal: true, converged: true };
  // A new or wiped node (or SYNC --full, or a copy cut short): the whole store is copied, not reconciled.
  const resumeAt = opts.copies?.get(theirs.peer);
  if (opts.full || resumeAt !== undefined || isZero(store.rootHash())) {
    await first.replies;
    const moved = await copyAll(store, peer, resumeAt ?? FIRST_KEY, limits, (progress, resume) => {
      if (resume === undefined) opts.copies?.delete(theirs.peer);
      else opts.copies?.set(theirs.peer, resume);
      opts.onStream?.(progress);
    });
    result.streamed += moved.received;
    result.keysReceived += moved.applied;
    result.roundTrips += moved.frames;
    theirs = parseRoot(await peer.line(ask), nodeId);
    result.roundTrips++;
    if (theirs.root === store.rootHash().toString('hex')) return { ...result, equal: equalRoots, converged: true };
    first = startDescent(store, peer);
    result.roundTrips++;
  }
  const stream = async (ranges: HashRange[]): Promise<void> => {
    const moved = await pullRanges(store, peer, ranges, limits, opts.onStream ?? (() => {}));
    result.streamed += moved.received;
    result.keysReceived += moved.applied;
    result.roundTrips += Math.ceil(moved.frames / LANES);
  };
  /**
   * Sends what `repairs` holds and empties it; `then` sends one more request behind them, in the same
   * round trip (the root check must see the peer after the pushes).
   */
  const apply = async <T>(repairs: Repairs, then: () => Promise<T>): Promise<T> => {
    const pulls = [...repairs.pulls.values()];
    const pushes = new Map(repairs.pushes);
    const streams = repairs.streams.splice(0);
    repairs.pulls.clear();
    repairs.pushes.clear();
    if (streams.length > 0) await stream(streams);
    // pull() writes its first requests before its first await; the request `then` sends goes out
    // behind the last push.
    const pulling = pull(store, peer, pulls, limits);
    const pushing = push(store, peer, pushes);
    // Awaited only if the pulls and pushes succeed; if they fail, its rejection is expected, not unhandled.
    const other = expected(pushing.written.then(then));
    const [[received, extraTrips]] = await Promise.all([pulling, pushing.acked]);
    result.roundTrips += 1 + extraTrips;
    result.keysSent += pushes.size;
    result.keysReceived += received;
    return await other;
  };
  while (result.passes < MAX_PASSES && theirs.root !== store.rootHash().toString('hex')) {
    if (result.passes > 0) {
      first = startDescent(store, peer, false);
      result.roundTrips++;
    }
    result.passes++;
    const repairs: Repairs = { pulls: new Map(), pushes: new Map(), streams: [] };
    // A store far behind its peer must not hold every repair in memory: send them as they add up.
    const relief = { batch: opts.repairBatch ?? REPAIR_BATCH, flush: () => apply(repairs, () => Promise.resolve()) };
    const diff = await descend(store, peer, first, limits, repairs, relief);
    result.roundTrips += diff.roundTrips;
    result.nodesCompared += diff.nodesCompared;
    result.keysReceived += diff.received;
    theirs = parseRoot(await apply(repairs, () => peer.line(ask)), nodeId);
  }
  return { ...result, equal: equalRoots, converged: theirs.root === store.rootHash().toString('hex') };
}

function parseRoot(line: string, nodeId: string): { root: string; peer: string } {
  const reply = parseRootReply(line);
  if (reply.peer === nodeId) throw new SelfPeerError('the peer is this node');
  return reply;
}

/** Records to fetch (by key hash) and to send (by key), keyed by key hash (latin1); ranges to stream. */
interface Repairs {
  readonly pulls: Map<string, Buffer>;
  readonly pushes: Map<string, Buffer>;
  readonly streams: HashRange[];
}

/** A descent's first request, sent; its window offset, whether it is an exchange's first, and the peer's pending answers. */
interface Started {
  readonly offset: number;
  readonly firstPass: boolean;
  readonly replies: Promise<Buffer[]>;
}

/**
 * Sends the first AE.DIFF of a descent: this node's windows two levels below the root (one for a small
 * store), at a new window offset (one that hid a difference is not used twice). A first pass takes one
 * byte of each sum (FIRST_WINDOW): it also goes out between equal replicas, and for one difference; a
 * later pass, which runs only because differences remain, takes two. The answer's windows take two.
 */
function startDescent(store: Store, peer: PeerClient, firstPass = true): Started {
  const offset = randomInt(0, 16 - WINDOW + 1);
  const levels = store.size + store.tombstoneCount > TWO_LEVELS_FROM && store.merkle.depth >= 2 ? 2 : 1;
  const width = firstPass ? FIRST_WINDOW : WINDOW;
  const windows = windowsOf(sumsBelow(store, 0, 0, levels), offset, width);
  const entries: DiffEntry[] = [{ kind: 'hashes', depth: 0, index: 0, levels, width, windows }];
  // Awaited by the descent; an exchange that ends first (equal roots) leaves it unread.
  return { offset, firstPass, replies: expected(Promise.all([peer.binary(diffLine(offset, LIST_SPARSE, WINDOW, entries))])) };
}

/**
 * Runs a descent from its first request to its end: each answer compared as soon as it arrives, and what
 * differs answered one level down at once, so that the peer answers one request while this node
 * compares the answer to another (both sides busy, not in turn); the records an answer carries
 * applied; repairs collected into `repairs` (a node empty here becomes a range to stream), and sent by
 * `relief.flush` whenever `relief.batch` of them are waiting (the chain that found them waits for that). Round
 * trips are counted as the longest chain of requests.
 */
async function descend(
  store: Store,
  peer: PeerClient,
  first: Started,
  limits: Limits,
  repairs: Repairs,
  relief: { readonly batch: number; readonly flush: () => Promise<void> },
): Promise<{ roundTrips: number; nodesCompared: number; received: number }> {
  const { offset, firstPass } = first;
  const commits: Promise<void>[] = [];
  const counts = { roundTrips: 0, nodesCompared: 0, received: 0 };
  const keys: KeyRepairs = {
    send: (kh, key) => repairs.pushes.set(kh, key),
    fetch: (kh, keyHash) => repairs.pulls.set(kh, keyHash),
  };
  // The keys of the records this node listed, by key hash: what the peer says it needs is sent without a lookup.
  const listed = new Map<string, Buffer>();
  // One flush at a time; a chain that finds too many repairs waiting waits for it (and starts another
  // if they are still too many then), so that memory stays bounded without a queue of flushes.
  let flushing: Promise<void> | undefined;
  const relieve = async (): Promise<void> => {
    while (repairs.pulls.size + repairs.pushes.size + repairs.streams.length >= relief.batch) {
      flushing ??= relief.flush().finally(() => (flushing = undefined));
      await flushing;
    }
  };
  /** Compares one answer (`trip` requests deep) and sends what differs one level down; returns those requests' answers. */
  const step = async (replies: Buffer[], trip: number): Promise<Promise<Buffer>[]> => {
    const next = compareAnswer(store, replies, { offset, firstPass, limits, repairs, keys, listed, commits, counts });
    await relieve();
    if (next.entries.length === 0) return [];
    counts.roundTrips = Math.max(counts.roundTrips, trip + 1);
    return sendBatches(next.entries, MAX_ENTRIES, (part) => peer.binary(diffLine(offset, next.listMax, next.width, part))).map((b) => b.reply);
  };
  await new Promise<void>((resolve, reject) => {
    let open = 0;
    let failed = false;
    const fail = (err: Error): void => {
      failed = true;
      reject(err);
    };
    const follow = (replies: Promise<Buffer[]>, trip: number): void => {
      open++;
      replies
        .then((r) => step(r, trip))
        .then((more) => {
          if (failed) return;
          for (const reply of more) follow(reply.then((r) => [r]), trip + 1);
          if (--open === 0) resolve();
        })
        .catch(fail);
    };
    follow(first.replies, 0);
  });
  await flushing;
  await Promise.all(commits);
  return counts;
}

interface AnswerContext {
  readonly offset: number;
  readonly firstPass: boolean;
  readonly limits: Limits;
  readonly repairs: Repairs;
  readonly keys: KeyRepairs;
  readonly listed: Map<string, Buffer>;
  readonly commits: Promise<void>[];
  readonly counts: { nodesCompared: number; received: number };
}

/** One answer of the peer compared with this node's view: the entries of the next request, and its listing size and window width. */
function compareAnswer(store: Store, replies: Buffer[], ctx: AnswerContext): { entries: DiffEntry[]; listMax: number; width: number } {
  const { offset, repairs, keys, listed, counts } = ctx;
  const next: DiffEntry[] = [];
  const entries = replies.flatMap((reply) => decodeDiff(reply, ctx.limits));
  // Few nodes left: list small ones at once, saving a round trip.
  const listMax = entries.length > 16 ? LIST_DENSE : LIST_SPARSE;
  const nodes = new NodeRecords(store);
  nodes.load(entries.flatMap((e) => (e.kind === 'hashes' || e.kind === 'list' ? [[e.depth, e.index] as const] : [])));
  const differing: [number, number][] = [];
  for (const e of entries) {
    if (e.kind === 'hashes') {
      counts.nodesCompared++;
      compareHashes(store, e, offset, nodes, (depth, index, empty) => {
        if (empty) repairs.streams.push(nodeRange(depth, index));
        else differing.push([depth, index]);
      });
    } else if (e.kind === 'list') {
      compareListing(nodes.get(e.depth, e.index), e.entries, offset, keys);
    } else if (e.kind === 'records') {
      counts.received += applyRecords(store, e.records, ctx.commits);
    } else if (e.kind === 'pull') {
      for (const kh of e.keyHashes) repairs.pulls.set(kh.toString('latin1'), kh);
    } else {
      for (const kh of e.keyHashes) {
        const k = kh.toString('latin1');
        const key = listed.get(k);
        if (key !== undefined) repairs.pushes.set(k, key);
        else for (const r of store.ranges.recordsWithKeyHash(kh)) repairs.pushes.set(k, r.key);
      }
    }
  }
  if (differing.length > MAX_FRONTIER) throw new ProtocolError(`peer reported over ${MAX_FRONTIER} differing nodes`);
  nodes.load(differing);
  const width = ctx.firstPass && differing.length >= DENSE_NODES ? FIRST_WINDOW : WINDOW;
  for (const [depth, index] of differing) {
    const e = describe(store, depth, index, listMax, offset, width, nodes);
    if (e.kind === 'list') for (const { key, rec } of nodes.get(depth, index)) listed.set(recordKeyHashBytes(rec).toString('latin1'), key);
    next.push(e);
  }
  return { entries: next, listMax, width };
}
