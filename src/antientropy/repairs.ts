import { ProtocolError } from '../errors.js';
import { expected } from '../expected.js';
import type { Limits } from '../rules.js';
import type { Store } from '../store/index.js';
import type { PeerClient } from './peer.js';
import { getLine, putLine } from './requests.js';
import { decodeRecords, MAX_BATCH, wireRecordOf, type WireRecord } from './wire.js';

/* Moving the records a comparison found to differ: fetched by key hash (AE.GET), sent as AE.PUT lines. */

/** Fetches records by key hash and applies them. Returns (records applied, round trips beyond the first). */
export async function pull(store: Store, peer: PeerClient, keyHashes: Buffer[], limits: Limits): Promise<[number, number]> {
  let applied = 0;
  let extra = -1;
  let todo = keyHashes;
  const commits: Promise<void>[] = [];
  while (todo.length > 0) {
    extra++;
    const again: Buffer[] = [];
    const batches = sendBatches(todo, MAX_BATCH, (part) => peer.binary(getLine(part)));
    for (const { part: asked, reply } of batches) {
      const { served, records } = decodeRecords(await reply, limits);
      applied += apply(store, records, commits);
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
 * Applies records from a peer through the store's merge, and puts them in the log at once, as a
 * client's writes are at the end of its batch. Returns how many changed something; their commits are
 * added to `commits` (awaited by the caller, unless the exchange stops first: then their failure, a
 * disk's, is expected rather than unhandled).
 */
export function apply(store: Store, records: readonly WireRecord[], commits: Promise<void>[]): number {
  let applied = 0;
  for (const r of records) {
    const done = store.applyRemote(r.key, r.state);
    if (done === undefined) continue;
    applied++;
    if (done !== null) commits.push(expected(done));
  }
  store.flush();
  return applied;
}

/**
 * Sends our records for the given keys, pipelined, waiting whenever the socket is congested (a record
 * may be a megabyte: thousands of them must not pile up in memory). `written` resolves once every line
 * is handed to the socket, `acked` once the peer has committed them all.
 */
export function push(store: Store, peer: PeerClient, keys: Map<string, Buffer>): { written: Promise<void>; acked: Promise<void> } {
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
 * Splits `items` into requests of at most `size`, all sent at once (pipelined: one round trip), and
 * returns each part with its pending reply, in order.
 */
export function sendBatches<T>(items: T[], size: number, send: (part: T[]) => Promise<Buffer>): { part: T[]; reply: Promise<Buffer> }[] {
  const out: { part: T[]; reply: Promise<Buffer> }[] = [];
  for (let i = 0; i < items.length; i += size) {
    const part = items.slice(i, i + size);
    out.push({ part, reply: send(part) });
  }
  return out;
}
