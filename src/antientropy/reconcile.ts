import { compareVersion } from '../hlc.js';
import { ProtocolError } from '../errors.js';
import { recordItem, recordKeyHashBytes, recordVersionOf, type Store, type StoredEntry } from '../store/index.js';
import { INLINE_BYTES, MAX_DEPTH, WINDOW, type DiffEntry, type ListedEntry, type OutgoingEntry } from './diff.js';
import { isZero, NodeRecords, sumsBelow, windowDiffers, windowsOf } from './nodes.js';

/*
 * What both sides of a descent do with the other's view of a node (diff.ts): compare it with their
 * own, and say what they see one level further down. The answering side runs `answerDiff` on each
 * request; the initiator runs the same comparisons on each answer (exchange.ts).
 */

/** A comparison's outcome for one key: send ours (its key and record), fetch theirs (by key hash). Keyed by key hash, latin1. */
export interface KeyRepairs {
  readonly send: (kh: string, key: Buffer, rec: Buffer) => void;
  readonly fetch: (kh: string, keyHash: Buffer) => void;
}

/**
 * What this side says of a node found to differ: its records, when the node is below the in-memory
 * tree and holds at most `listMax` of them (or is at the deepest level), else its children's windows
 * (`width` bytes of each sum).
 */
export function describe(store: Store, depth: number, index: number, listMax: number, offset: number, width: number, nodes: NodeRecords): DiffEntry {
  if (depth < store.merkle.depth) return { kind: 'hashes', depth, index, levels: 1, width, windows: windowsOf(store.merkle.children(depth, index), offset, width) };
  const records = nodes.get(depth, index);
  if (records.length <= listMax || depth === MAX_DEPTH) return { kind: 'list', depth, index, entries: records.map((r) => listed(r.rec, offset)) };
  return { kind: 'hashes', depth, index, levels: 1, width, windows: windowsOf(sumsBelow(store, depth, index, 1, records), offset, width) };
}

/**
 * Compares the other side's windows of a node's descendants with ours; `differs` is told of each
 * descendant whose windows differ, and whether it is empty here.
 */
export function compareHashes(
  store: Store,
  e: Extract<DiffEntry, { kind: 'hashes' }>,
  offset: number,
  nodes: NodeRecords,
  differs: (depth: number, index: number, emptyHere: boolean) => void,
): void {
  const below = e.depth + e.levels > store.merkle.depth ? nodes.get(e.depth, e.index) : undefined;
  const mine = sumsBelow(store, e.depth, e.index, e.levels, below);
  const count = 16 ** e.levels;
  const width = e.width;
  for (let j = 0; j < count; j++) {
    if (windowDiffers(mine, e.windows, j, offset, width)) differs(e.depth + e.levels, e.index * count + j, isZero(mine, j));
  }
}

/**
 * Our records under a node the other side listed: decide, key by key, who sends what. The newer epoch
 * is sent to the older; records of one epoch whose item windows differ (a counter incremented on both
 * sides, an expiry changed) go both ways, and each side merges (store/state.ts).
 */
export function compareListing(ours: readonly StoredEntry[], theirs: readonly ListedEntry[], offset: number, repairs: KeyRepairs): void {
  const remote = new Map<string, ListedEntry>();
  for (const e of theirs) remote.set(e.keyHash.toString('latin1'), e);
  for (const { key, rec } of ours) {
    const kh = recordKeyHashBytes(rec).toString('latin1');
    const other = remote.get(kh);
    remote.delete(kh);
    const order = other === undefined ? 1 : compareVersion(recordVersionOf(rec), other.version);
    const differs = order !== 0 || recordItem(rec).slice(offset, offset + WINDOW) !== other?.item.toString('latin1');
    if (order >= 0 && differs) repairs.send(kh, key, rec);
    if (order <= 0 && differs) repairs.fetch(kh, Buffer.from(kh, 'latin1'));
  }
  for (const [kh, e] of remote) repairs.fetch(kh, e.keyHash);
}

/**
 * The answering side of AE.DIFF: for each node whose descendants' windows differ from the initiator's,
 * this node's view one level down (`width` bytes of each sum; an empty listing where it holds nothing
 * there: the initiator sends all it has); for each node the initiator listed, this node's newer
 * records ('records', up to INLINE_BYTES; the key hashes of the rest in 'pull') and the key hashes of
 * those it needs ('need').
 */
export function answerDiff(store: Store, offset: number, listMax: number, width: number, entries: readonly DiffEntry[]): OutgoingEntry[] {
  const out: OutgoingEntry[] = [];
  const records: StoredEntry[] = [];
  let inlined = 0;
  const pulls: Buffer[] = [];
  const needs: Buffer[] = [];
  const nodes = new NodeRecords(store);
  nodes.load(entries.flatMap((e) => (e.kind === 'hashes' || e.kind === 'list' ? [[e.depth, e.index] as const] : [])));
  const differing: [number, number][] = [];
  for (const e of entries) {
    if (e.kind === 'hashes') {
      compareHashes(store, e, offset, nodes, (depth, index, empty) => {
        if (empty) out.push({ kind: 'list', depth, index, entries: [] });
        else differing.push([depth, index]);
      });
    } else if (e.kind === 'list') {
      const repairs: KeyRepairs = {
        send: (kh, key, rec) => {
          if (inlined >= INLINE_BYTES) return void pulls.push(Buffer.from(kh, 'latin1'));
          inlined += key.length + rec.length;
          records.push({ key, rec });
        },
        fetch: (_kh, keyHash) => needs.push(keyHash),
      };
      compareListing(nodes.get(e.depth, e.index), e.entries, offset, repairs);
    } else {
      throw new ProtocolError('AE.DIFF requests carry hashes and listings only');
    }
  }
  nodes.load(differing);
  for (const [depth, index] of differing) out.push(describe(store, depth, index, listMax, offset, width, nodes));
  if (records.length > 0) out.push({ kind: 'records', records });
  if (pulls.length > 0) out.push({ kind: 'pull', keyHashes: pulls });
  if (needs.length > 0) out.push({ kind: 'need', keyHashes: needs });
  return out;
}

/** A listing's entry for a stored record. */
function listed(rec: Buffer, offset: number): ListedEntry {
  return { keyHash: Buffer.from(recordKeyHashBytes(rec)), version: recordVersionOf(rec), item: Buffer.from(recordItem(rec).slice(offset, offset + WINDOW), 'latin1') };
}
