import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LineClient, tempDir } from '../helpers.js';
import { spawnNode } from '../process.js';
import { startCluster, startReplicatedNode, waitFor } from '../replication/cluster.js';
import { startTestNode } from '../helpers.js';

/*
 * Filling an empty node (stream.ts, copyAll) under the conditions a real one meets: writes arriving over
 * MQTT while it copies, and the node it copies from going away midway.
 */

describe('bootstrap of an empty node', () => {
  it('converges with a node that keeps writing through MQTT while the copy runs', async () => {
    const [a] = await startCluster(1, undefined, () => ({ 'anti_entropy.enabled': 'false' }));
    if (a === undefined) throw new Error('no node');
    const value = Buffer.alloc(200, 'v');
    for (let i = 0; i < 20_000; i++) void a.node.store.set(Buffer.from(`key:${i}`), value);
    await a.node.store.settled();
    const url = `mqtt://127.0.0.1:${a.node.broker?.address.port}`;
    const b = await startReplicatedNode('node-2', { 'mqtt.broker_address': url, 'anti_entropy.enabled': 'false' });
    await waitFor('node-2 subscribed', () => b.node.replicator?.stats.subscribed === true);
    // Writes through the client protocol on node-1 (published, applied by node-2 as they come) while
    // node-2 copies: new keys and rewrites of keys being copied.
    const writer = await LineClient.connect(a.node.address.port);
    let writing = true;
    let written = 0;
    const writes = (async () => {
      for (let i = 0; writing && i < 5000; i++) {
        const key = i % 2 === 0 ? `live:${i}` : `key:${(i * 7) % 20_000}`;
        expect(await writer.call(`SET ${key} during-${i}`)).toBe('OK');
        written++;
      }
    })();
    const result = await b.node.antiEntropy.syncWith('127.0.0.1', a.node.address.port);
    writing = false;
    await writes;
    expect(result.streamed).toBeGreaterThanOrEqual(20_000);
    expect(written).toBeGreaterThan(0);
    // What replication carried meanwhile and what the copy carried come together: the same root.
    await waitFor('the replicas to be equal', async () => {
      await b.node.antiEntropy.syncWith('127.0.0.1', a.node.address.port);
      return b.node.store.rootHash().equals(a.node.store.rootHash());
    });
    expect(b.node.store.size).toBe(a.node.store.size);
  });

  it('resumes a copy where it stopped when the node it copied from was killed midway', async () => {
    const dir = join(tempDir(), 'source');
    const env = { MERKLE_KV_ANTI_ENTROPY_ENABLED: 'false' };
    let source = await spawnNode(['--node-id', 'source', '--data-dir', dir], { env });
    const c = await LineClient.connect(source.port);
    const value = 'v'.repeat(1000);
    for (let i = 0; i < 24_000; i += 100) {
      const pairs = Array.from({ length: 100 }, (_, k) => `key:${i + k} ${value}`).join(' ');
      expect(await c.call(`MSET ${pairs}`)).toBe('OK');
    }
    const b = await startTestNode({ node_id: 'b' });
    // 24 MB in frames of about 1 MiB: killed once a few frames have arrived (the copy takes 10 times longer).
    const first = b.antiEntropy.syncWith('127.0.0.1', source.port).then(
      () => 'finished',
      (err: Error) => err.message,
    );
    await waitFor('a few frames', () => b.antiEntropy.streams.figures().runningKeys >= 2000, 20_000);
    source.child.kill('SIGKILL');
    expect(await first).toMatch(/sync with 127\.0\.0\.1:\d+ failed/);
    const copied = b.antiEntropy.streams.figures().keys;
    expect(copied).toBeGreaterThanOrEqual(2000);
    expect(copied).toBeLessThan(24_000);
    await source.exited;
    // Back (after a crash: it replays its log), on another port: the copy resumes, by node id, where it stopped.
    source = await spawnNode(['--node-id', 'source', '--data-dir', dir], { env });
    const again = await b.antiEntropy.syncWith('127.0.0.1', source.port);
    expect(again.converged).toBe(true);
    // Only what the first copy did not apply comes again (a frame may have been half applied).
    expect(again.streamed).toBeLessThanOrEqual(24_000 - copied + 1000);
    expect(b.store.size).toBe(24_000);
  });

  it('resumes a copy after the node filling itself was stopped midway and started again', async () => {
    const a = await startTestNode({ node_id: 'a' });
    const value = Buffer.alloc(1000, 'v');
    for (let i = 0; i < 24_000; i++) void a.store.set(Buffer.from(`key:${i}`), value);
    await a.store.settled();
    const dir = join(tempDir(), 'b');
    const flags = { node_id: 'b', 'storage.path': dir };
    const b = await startTestNode(flags);
    const first = b.antiEntropy.syncWith('127.0.0.1', a.address.port).then(
      () => 'finished',
      (err: Error) => err.message,
    );
    await waitFor('a few frames', () => b.antiEntropy.streams.figures().runningKeys >= 2000, 20_000);
    await b.stop();
    expect(await first).toMatch(/failed/);
    const again = await startTestNode(flags);
    const held = again.store.size;
    expect(held).toBeGreaterThanOrEqual(2000);
    expect(held).toBeLessThan(24_000);
    const result = await again.antiEntropy.syncWith('127.0.0.1', a.address.port);
    expect(result.converged).toBe(true);
    // The copy went on from where it stopped (no comparison was needed after it), and what the node held
    // was not sent again (a frame at most).
    expect(result.passes).toBe(0);
    expect(result.streamed).toBeLessThanOrEqual(24_000 - held + 1100);
    expect(again.store.rootHash()).toEqual(a.store.rootHash());
  });
});
