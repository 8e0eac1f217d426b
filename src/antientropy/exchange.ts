import { randomInt } from 'node:crypto';
import { ProtocolError, SelfPeerError } from '../errors.js';
import { expected } from '../expected.js';
import type { Limits } from '../rules.js';
import { compareVersion } from '../hlc.js';
import { recordItem, recordKeyHashBytes, recordVersionOf, type Store, type StoredEntry } from '../store/index.js';
import { childSums, windowDiffers } from './nodes.js';
import type { PeerClient } from './peer.js';
import { getLine, nodesLine, parseRootReply, putLine, rootLine } from './requests.js';
import {
  decodeNodeReplies,
  decodeRecords,
  HASH_WINDOW,
  MAX_BATCH,
  MAX_DEPTH,
  wireRecordOf,
  type ListedEntry,
} from './wire.js';

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
}

/** The most nodes one level of a descent may hold: 2^20, the segments of the largest tree (20 bits). */
const MAX_FRONTIER = 1 << 20;

/** Passes one exchange may make when the roots still differ after a pass (see HASH_WINDOW). */
const MAX_PASSES = 3;

/**
 * One anti-entropy exchange, run by the initiating side (DESIGN.md section 6): compare roots; descend
 * level by level into the children whose hash windows differ, every node of a level in one pipelined
 * round trip; where the peer lists a small node's (key hash, version) pairs, compare them with ours;
 * then pull the records where the peer is newer and push those where we are, concurrently, and ask
 * for the peer's root again in the same round trip. Both sides apply through the store's
 * last-writer-wins path, so an exchange is idempotent. If the roots still differ (writes meanwhile,
 * or a window that hid a difference) another pass runs, at most MAX_PASSES in all.
 */
export async function exchange(store: Store, peer: PeerClient, nodeId: string, limits: Limits, full = false): Promise<ExchangeResult> {
  const ask = rootLine(store.secretFingerprint, store.merkle.bits);
  let theirs = parseRoot(await peer.line(ask), nodeId);
  const result = { peer: theirs.peer, equal: false, roundTrips: 1, nodesCompared: 0, keysSent: 0, keysReceived: 0, passes: 0 };
  const equalRoots = theirs.root === store.rootHash().toString('hex');
  if (equalRoots && !full) return { ...result, equal: true, converged: true };
  /**
   * Sends what `repairs` holds and empties it; `then` sends one more request behind them, in the same
   * round trip (the root check must see the peer after the pushes).
   */
  const apply = async <T>(repairs: Repairs, then: () => Promise<T>): Promise<T> => {
    const pulls = [...repairs.pulls.values()];
    const pushes = new Map(repairs.pushes);
    repairs.pulls.clear();
    repairs.pushes.clear();
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
  // Full (SYNC --full): one pass at least, through every node of the tree, equal hashes or not.
  while (result.passes < MAX_PASSES && ((full && result.passes === 0) || theirs.root !== store.rootHash().toString('hex'))) {
    result.passes++;
    const repairs: Repairs = { pulls: new Map(), pushes: new Map() };
    // A store far behind its peer must not hold every repair in memory: send them as they add up.
    const diff = await descend(store, peer, repairs, () => apply(repairs, () => Promise.resolve()), full && result.passes === 1);
    result.roundTrips += diff.levels;
    result.nodesCompared += diff.nodesCompared;
    theirs = parseRoot(await apply(repairs, () => peer.line(ask)), nodeId);
  }
  return { ...result, equal: equalRoots, converged: theirs.root === store.rootHash().toString('hex') };
}

function parseRoot(line: string, nodeId: string): { root: string; peer: string } {
  const reply = parseRootReply(line);
  if (reply.peer === nodeId) throw new SelfPeerError('the peer is this node');
  return reply;
}

/** Records to fetch (by key hash) and to send (by key), keyed by key hash (latin1). */
interface Repairs {
  readonly pulls: Map<string, Buffer>;
  readonly pushes: Map<string, Buffer>;
}

/** Repairs held before they are sent in the middle of a descent. */
const REPAIR_BATCH = 4096;

/**
 * Walks down from the root through the nodes whose windows differ (every node, if `all`), down to
 * listings, collecting into `repairs`; calls `flush` whenever REPAIR_BATCH of them are waiting.
 */
async function descend(
  store: Store,
  peer: PeerClient,
  repairs: Repairs,
  flush: () => Promise<void>,
  all: boolean,
): Promise<{ levels: number; nodesCompared: number }> {
  // A different window of the 16-byte sums each pass: one that hid a difference is not used twice.
  const offset = randomInt(0, 16 - HASH_WINDOW + 1);
  let nodesCompared = 0;
  let levels = 0;
  let frontier = [0];
  for (let depth = 0; frontier.length > 0 && depth <= MAX_DEPTH; depth++) {
    levels++;
    const next: number[] = [];
    const batches = sendBatches(frontier, (part) => peer.binary(nodesLine(depth, offset, part)));
    for (const { part: indices, reply } of batches) {
      const replies = decodeNodeReplies(await reply, indices.length);
      // Below the stored tree, our records of the whole batch are read at once.
      const below = depth >= store.merkle.depth ? store.ranges.recordsUnderEach(depth, indices) : undefined;
      replies.forEach((reply, i) => {
        const index = indices[i] as number;
        if (reply.kind === 'list') {
          compareListing(below?.[i] ?? store.ranges.recordsUnder(depth, index), reply.entries, offset, repairs);
          return;
        }
        if (depth === MAX_DEPTH) throw new ProtocolError('peer split a node at the deepest level');
        nodesCompared++;
        const mine = childSums(store, depth, index, below?.[i]);
        for (let c = 0; c < 16; c++) if (all || windowDiffers(mine, reply.windows, c, offset)) next.push(index * 16 + c);
      });
      if (repairs.pulls.size + repairs.pushes.size >= REPAIR_BATCH) await flush();
    }
    // Only a peer that lies about its tree (or one far larger than a node should hold) gets here:
    // every further level could be sixteen times larger.
    if (next.length > MAX_FRONTIER) throw new ProtocolError(`peer reported over ${MAX_FRONTIER} differing nodes at depth ${depth + 1}`);
    frontier = next;
  }
  return { levels, nodesCompared };
}

/**
 * Our records under a node the peer listed: decide, key by key, who sends what. The newer epoch is
 * sent to the older; records of one epoch whose item hashes differ (a counter incremented on both
 * sides, an expiry changed) go both ways, and each side merges (store/state.ts).
 */
function compareListing(ours: StoredEntry[], theirs: ListedEntry[], offset: number, { pulls, pushes }: Repairs): void {
  const remote = new Map<string, ListedEntry>();
  for (const e of theirs) remote.set(e.keyHash.toString('latin1'), e);
  for (const { key, rec } of ours) {
    const kh = recordKeyHashBytes(rec).toString('latin1');
    const other = remote.get(kh);
    remote.delete(kh);
    const order = other === undefined ? 1 : compareVersion(recordVersionOf(rec), other.version);
    const differs = order !== 0 || recordItem(rec).slice(offset, offset + HASH_WINDOW) !== other?.item.toString('latin1');
    if (order >= 0 && differs) pushes.set(kh, key);
    if (order <= 0 && differs) pulls.set(kh, Buffer.from(kh, 'latin1'));
  }
  for (const [kh, e] of remote) pulls.set(kh, e.keyHash);
}

/** Fetches records by key hash and applies them. Returns (records applied, round trips beyond the first). */
async function pull(store: Store, peer: PeerClient, keyHashes: Buffer[], limits: Limits): Promise<[number, number]> {
  let applied = 0;
  let extra = -1;
  let todo = keyHashes;
  const commits: Promise<void>[] = [];
  while (todo.length > 0) {
    extra++;
    const again: Buffer[] = [];
    const batches = sendBatches(todo, (part) => peer.binary(getLine(part)));
    for (const { part: asked, reply } of batches) {
      const { served, records } = decodeRecords(await reply, limits);
      for (const r of records) {
        const done = store.applyRemote(r.key, r.state);
        if (done === undefined) continue;
        applied++;
        if (done !== null) commits.push(done);
      }
      // Into the log now, as a client's writes would be at the end of its batch.
      store.flush();
      // A reply cut at the size cap leaves the rest of its key hashes to ask for again.
      if (served === 0 || served > asked.length) throw new ProtocolError('peer answered AE.GET with a wrong count');
      again.push(...asked.slice(served));
    }
    todo = again;
  }
  await Promise.all(commits);
  return [applied, Math.max(extra, 0)];
}

/**
 * Sends our records for the given keys, pipelined, waiting whenever the socket is congested (a record
 * may be a megabyte: thousands of them must not pile up in memory). `written` resolves once every line
 * is handed to the socket, `acked` once the peer has committed them all.
 */
function push(store: Store, peer: PeerClient, keys: Map<string, Buffer>): { written: Promise<void>; acked: Promise<void> } {
  const acks: Promise<string>[] = [];
  const written = (async () => {
    for (const key of keys.values()) {
      if (peer.congested) await peer.drained();
      // Read now, not before the wait: putLine copies the value out of the store's buffer.
      const rec = store.read(key).value;
      if (rec !== undefined) acks.push(peer.line(putLine(wireRecordOf(key, rec))));
    }
  })();
  const acked = written.then(async () => {
    await Promise.all(acks);
  });
  return { written, acked };
}

/**
 * Splits `items` into requests of at most MAX_BATCH, all sent at once (pipelined: one round trip), and
 * returns each part with its pending reply, in order.
 */
function sendBatches<T>(items: T[], send: (part: T[]) => Promise<Buffer>): { part: T[]; reply: Promise<Buffer> }[] {
  const out: { part: T[]; reply: Promise<Buffer> }[] = [];
  for (let i = 0; i < items.length; i += MAX_BATCH) {
    const part = items.slice(i, i + MAX_BATCH);
    out.push({ part, reply: send(part) });
  }
  return out;
}
