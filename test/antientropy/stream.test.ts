import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it, onTestFinished } from 'vitest';
import { provePeer, PeerProof } from '../../src/antientropy/handshake.js';
import { exchange } from '../../src/antientropy/exchange.js';
import { PeerClient } from '../../src/antientropy/peer.js';
import { copyAll, decodeRange, FIRST_KEY, FRAME_BYTES, HASH_SPACE, hiKey, mergeRanges, pullRanges, rangeReply, splitRange } from '../../src/antientropy/stream.js';
import { ProtocolError } from '../../src/errors.js';
import { Store } from '../../src/store/index.js';
import { increment, setWithExpiry } from '../../src/store/index.js';
import { LineClient, silent, startTestNode, tempDir } from '../helpers.js';

const limits = { maxKeyBytes: 256, maxValueBytes: 1024 * 1024 };

function openStore(nodeId: string): Store {
  const store = Store.open({ path: join(tempDir(), 'db'), nodeId, maxClockSkewMs: 60_000, tombstoneGraceSeconds: 86_400, logger: silent });
  onTestFinished(() => store.close());
  return store;
}

/** Every record of `store`, in the key-hash order, through AE.RANGE replies: (key, item hash) pairs. */
function streamAll(store: Store): { pairs: string[]; frames: number } {
  const pairs: string[] = [];
  let from = hiKey(0);
  let frames = 0;
  for (;;) {
    const frame = rangeReply(store, from, undefined);
    frames++;
    const { resume, records } = decodeRange(frame);
    while (records.next()) {
      const key = records.buf.toString('latin1', records.keyStart, records.keyEnd);
      pairs.push(`${key}:${records.buf.toString('hex', records.itemAt, records.itemAt + 16)}`);
    }
    if (resume === undefined) return { pairs, frames };
    expect(resume.compare(from)).toBeGreaterThan(0);
    from = resume;
  }
}

describe('AE.RANGE frames (stream.ts)', () => {
  it('carry every record once, in key-hash order, resuming where a frame was cut', async () => {
    const store = openStore('n1');
    const big = Buffer.alloc(200 * 1024, 'v');
    for (let i = 0; i < 30; i++) void store.set(Buffer.from(`big:${i}`), big);
    for (let i = 0; i < 500; i++) void store.set(Buffer.from(`k:${i}`), Buffer.from(`value ${i}`));
    void store.delete(Buffer.from('k:7'));
    increment(store, Buffer.from('counter'), 5n);
    void setWithExpiry(store, Buffer.from('soon'), Buffer.from('x'), Date.now() + 3_600_000);
    // Half of them still pending (not in LMDB's index yet), half committed.
    const pendingView = streamAll(store);
    await store.settled();
    const settledView = streamAll(store);
    expect(settledView.pairs).toEqual(pendingView.pairs);
    expect(settledView.pairs.length).toBe(30 + 500 + 2);
    expect(new Set(settledView.pairs.map((p) => p.split(':')[0])).size).toBeGreaterThan(1);
    // 6 MB of values: cut into frames of about FRAME_BYTES.
    expect(settledView.frames).toBeGreaterThanOrEqual(Math.floor((30 * big.length) / FRAME_BYTES));
  });

  it('are refused, never misread, when cut short or garbled', () => {
    const store = openStore('n1');
    for (let i = 0; i < 20; i++) void store.set(Buffer.from(`k:${i}`), Buffer.from(`value ${i}`));
    const frame = rangeReply(store, hiKey(0), undefined);
    expect(decodeRange(frame).records).toHaveLength(20);
    for (let n = 0; n < frame.length; n++) {
      // A frame cut at a record boundary is a shorter valid frame; anywhere else it is refused.
      try {
        const { records } = decodeRange(frame.subarray(0, n));
        expect(records.length).toBeLessThan(20);
      } catch (err) {
        expect(err).toBeInstanceOf(ProtocolError);
      }
    }
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), (noise, at) => {
        const garbled = Buffer.from(frame);
        Buffer.from(noise).copy(garbled, at % garbled.length);
        for (const input of [garbled, Buffer.from(noise)]) {
          try {
            decodeRange(input);
          } catch (err) {
            expect(err).toBeInstanceOf(ProtocolError);
          }
        }
      }),
      { numRuns: 500, seed: 24 },
    );
  });

  it('split and merge ranges of the hash space', () => {
    expect(mergeRanges([{ from: 20, to: 30 }, { from: 0, to: 10 }, { from: 10, to: 15 }, { from: 25, to: 40 }])).toEqual([{ from: 0, to: 15 }, { from: 20, to: 40 }]);
    const lanes = splitRange({ from: 0, to: HASH_SPACE }, 4);
    expect(lanes).toEqual([0, 1, 2, 3].map((i) => ({ from: (i * HASH_SPACE) / 4, to: ((i + 1) * HASH_SPACE) / 4 })));
    // A narrow range is one lane.
    expect(splitRange({ from: 5, to: 9 }, 4)).toEqual([{ from: 5, to: 9 }]);
  });
});

describe('streaming between nodes', () => {
  it('fills an empty node, and one cut short resumes with only the part it lacks', async () => {
    const a = await startTestNode({ node_id: 'a' });
    for (let i = 0; i < 3000; i++) void a.store.set(Buffer.from(`key:${i}`), Buffer.from(`value ${i}`));
    increment(a.store, Buffer.from('hits'), 3n);
    await a.store.settled();
    const b = await startTestNode({ node_id: 'b' });
    const first = await b.antiEntropy.syncWith('127.0.0.1', a.address.port);
    expect(first.converged).toBe(true);
    expect(first.streamed).toBe(3001);
    expect(b.store.rootHash()).toEqual(a.store.rootHash());

    // A node that holds only part of the order (a bootstrap cut short) copies the empty part only.
    const c = await startTestNode({ node_id: 'c' });
    const peer = await PeerClient.open('127.0.0.1', a.address.port, 5000);
    onTestFinished(() => peer.close());
    await (await provePeer(peer, new PeerProof(''))).accepted;
    const half = await pullRanges(c.store, peer, [{ from: 0, to: HASH_SPACE / 2 }], limits, () => {});
    expect(half.received).toBeGreaterThan(1200);
    expect(half.received).toBeLessThan(1800);
    expect(half.done).toBe(1);
    const rest = await c.antiEntropy.syncWith('127.0.0.1', a.address.port);
    expect(rest.converged).toBe(true);
    expect(rest.streamed).toBe(3001 - half.received);
    expect(c.store.rootHash()).toEqual(a.store.rootHash());
  });

  it('resumes a copy cut short where it stopped, with the same peer', async () => {
    const a = await startTestNode({ node_id: 'a' });
    const value = Buffer.alloc(1000, 'v');
    for (let i = 0; i < 3000; i++) void a.store.set(Buffer.from(`key:${i}`), value);
    await a.store.settled();
    const b = await startTestNode({ node_id: 'b' });
    const peer = await PeerClient.open('127.0.0.1', a.address.port, 5000);
    onTestFinished(() => peer.close());
    await (await provePeer(peer, new PeerProof(''))).accepted;
    // The first frame arrives, then the copy is cut (as if the serving node had gone away).
    const copies = new Map<string, Buffer>();
    let first = 0;
    const cut = copyAll(b.store, peer, FIRST_KEY, limits, (p, resume) => {
      first = p.received;
      if (resume !== undefined) copies.set('a', resume);
      throw new Error('cut');
    });
    await expect(cut).rejects.toThrow('cut');
    expect(first).toBeGreaterThan(500);
    expect(first).toBeLessThan(3000);
    await b.store.settled();
    // The next exchange resumes at the cursor: only what the first frame did not carry moves.
    const again = await PeerClient.open('127.0.0.1', a.address.port, 5000);
    onTestFinished(() => again.close());
    const { accepted } = await provePeer(again, new PeerProof(''));
    await accepted;
    const result = await exchange(b.store, again, { nodeId: 'b', limits, copies });
    expect(result.streamed).toBe(3000 - first);
    expect(result.converged).toBe(true);
    expect(copies.size).toBe(0);
    expect(b.store.rootHash()).toEqual(a.store.rootHash());
  });

  it('refuses a peer that speaks another anti-entropy protocol, saying so', async () => {
    const a = await startTestNode({ node_id: 'a' });
    const c = await LineClient.connect(a.address.port);
    expect(await c.call(`AE.HELLO ${'ab'.repeat(16)}`)).toBe(
      'ERROR anti-entropy protocol 1 (an older release) is not spoken here: this node speaks 3; upgrade the older node',
    );
    expect(await c.call(`AE.HELLO ${'ab'.repeat(16)} 2`)).toBe('ERROR anti-entropy protocol "2" is not spoken here: this node speaks 3; upgrade the older node');
  });
});
