import mqtt from 'mqtt';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { AntiEntropy } from '../../src/antientropy/antientropy.js';
import { PeerProof } from '../../src/antientropy/handshake.js';
import { chooseInTurn, PeerSet } from '../../src/antientropy/rotation.js';
import { encodeStatus, Presence, type NodeStatus } from '../../src/replication/presence.js';
import { Store } from '../../src/store/store.js';
import { silent, startTestNode, tempDir } from '../helpers.js';
import { freePort, startReplicatedNode, valueOn, waitFor, type ClusterNode } from '../replication/cluster.js';
import { hasMosquitto, startMosquitto } from '../replication/mosquitto.js';

const status = (node: string, address: string, state: 'online' | 'offline' = 'online', at = Date.now()): NodeStatus => ({ node, state, address, version: '0.1.0', at });

describe('chooseInTurn', () => {
  const peers = (n: number): { name: string; turn: number; rank: number }[] => Array.from({ length: n }, (_, i) => ({ name: `p${i}`, turn: 0, rank: (i * 7) % n }));

  it('takes up to max peers per round, each once before any twice', () => {
    const ps = peers(7);
    let turns = 0;
    const visits = new Map<string, number[]>();
    for (let round = 0; round < 14; round++) {
      const chosen = chooseInTurn(ps, 3, () => true);
      expect(chosen).toHaveLength(3);
      for (const p of chosen) {
        p.turn = ++turns;
        visits.set(p.name, [...(visits.get(p.name) ?? []), round]);
      }
    }
    // 14 rounds x 3 = 42 exchanges: 6 per peer, one every 7/3 rounds (2 or 3 apart).
    for (const p of ps) {
      const rounds = visits.get(p.name) ?? [];
      expect(rounds, p.name).toHaveLength(6);
      for (let i = 1; i < rounds.length; i++) expect((rounds[i] as number) - (rounds[i - 1] as number)).toBeGreaterThanOrEqual(2);
    }
  });

  it('starts with the peers that had no turn, by rank; a refused peer takes no place; none asked after max', () => {
    const ps = peers(5);
    for (const [i, p] of ps.entries()) p.turn = [4, 0, 2, 0, 1][i] as number;
    const asked: string[] = [];
    const chosen = chooseInTurn(ps, 2, (p) => {
      asked.push(p.name);
      return p.name !== 'p3';
    });
    // Turn 0: p1 (rank 2) and p3 (rank 1): p3 first but refused; then p1; then p4 (turn 1).
    expect(asked).toEqual(['p3', 'p1', 'p4']);
    expect(chosen.map((p) => p.name)).toEqual(['p1', 'p4']);
    expect(chooseInTurn(ps, 0, () => true)).toEqual([]);
  });
});

describe('PeerSet', () => {
  it('is one peer per node: listed by address, found by node id; found peers follow their address and are forgotten', () => {
    const set = new PeerSet(['127.0.0.1:7001']);
    expect(set.track(status('a', '127.0.0.1:7001'))).toMatchObject({ added: false, peer: { listed: true, node: 'a' } });
    expect(set.track(status('b', '127.0.0.1:7002'))).toMatchObject({ added: true, peer: { listed: false, node: 'b', port: 7002 } });
    expect(set.track(status('b', '127.0.0.1:7003'))).toMatchObject({ added: false, peer: { address: '127.0.0.1:7003', port: 7003 } });
    // A listed peer keeps its listed address, whatever its status says.
    expect(set.track(status('a', 'node-a:7001'))).toMatchObject({ peer: { address: '127.0.0.1:7001' } });
    expect(set.track(status('c', 'no port'))).toBeUndefined();
    expect(set.all.map((p) => p.node)).toEqual(['a', 'b']);
    set.forget('a');
    set.forget('b');
    expect(set.all.map((p) => p.node)).toEqual(['a']);
  });

  it('merges a found peer into a listed one once an exchange names the listed one', () => {
    const set = new PeerSet(['localhost:7001']);
    set.track(status('a', '127.0.0.1:7001'));
    expect(set.all).toHaveLength(2);
    const listed = set.all[0];
    if (listed === undefined) throw new Error('no listed peer');
    listed.node = 'a';
    set.merge(listed);
    expect(set.all).toEqual([listed]);
  });
});

/** An AntiEntropy of its own over a fresh store, fed statuses through `presence`; stopped when the test ends. */
function discovering(presence: Presence, opts: { peers?: string[]; intervalMs: number; maxConcurrent: number; brokerConnected?: () => boolean }): AntiEntropy {
  const store = Store.open({ path: join(tempDir(), 'db'), nodeId: 'me', maxClockSkewMs: 60_000, tombstoneGraceSeconds: 86_400, logger: silent });
  onTestFinished(() => store.close());
  const ae = new AntiEntropy({
    store,
    nodeId: 'me',
    limits: { maxKeyBytes: 512, maxValueBytes: 1024 },
    proof: new PeerProof(''),
    enabled: true,
    peers: opts.peers ?? [],
    intervalMs: opts.intervalMs,
    maxConcurrent: opts.maxConcurrent,
    presence,
    discover: true,
    brokerConnected: opts.brokerConnected ?? (() => true),
    logger: silent,
    timeoutMs: 2000,
  });
  onTestFinished(() => ae.stop());
  return ae;
}

const lastSyncs = (ae: AntiEntropy): number[] => ae.peerLines().map((l) => Number(/last_sync=(\d+)/.exec(l)?.[1]));

describe('anti-entropy over found peers', () => {
  it('a node whose first round found no peer to catch up from syncs with the next one it hears of, not an interval later', async () => {
    const peer = await startTestNode({ node_id: 'p' });
    const presence = new Presence('me');
    // A stale peer_list: nothing listens there.
    const ae = discovering(presence, { peers: [`127.0.0.1:${await freePort()}`], intervalMs: 60_000, maxConcurrent: 3 });
    // No jitter: the first round 500 ms after start (its one exchange fails), the next 48 s after that.
    const random = vi.spyOn(Math, 'random').mockReturnValue(0);
    onTestFinished(() => random.mockRestore());
    ae.start();
    await waitFor('the first round', () => ae.syncsFailed === 1, 2000);
    random.mockRestore();
    presence.update(status('p', `127.0.0.1:${peer.address.port}`));
    await waitFor('synced with p', () => ae.syncs === 1, 3000);
  });

  it('visits the nodes online in turn, max per round, one found later at the back; skips one reported offline and drops one cleared', async () => {
    const nodes = await Promise.all([0, 1, 2, 3, 4].map((i) => startTestNode({ node_id: `n${i}` })));
    const presence = new Presence('me');
    // n0 is also listed: one peer, not two.
    const ae = discovering(presence, { peers: [`127.0.0.1:${nodes[0]?.address.port}`], intervalMs: 250, maxConcurrent: 1 });
    ae.start();
    for (const [i, n] of nodes.slice(0, 4).entries()) presence.update(status(`n${i}`, `127.0.0.1:${n.address.port}`));
    expect(ae.peerLines()).toHaveLength(4);
    // One exchange per round: the fourth peer's first exchange comes with the fourth one in all.
    await waitFor('each peer synced once', () => lastSyncs(ae).every((t) => t > 0), 5000);
    expect(ae.syncs).toBeLessThanOrEqual(5);
    expect(ae.syncsFailed).toBe(0);
    // A node that joins now takes its turn after the four others (it catches up by itself).
    const joined = Date.now();
    presence.update(status('n4', `127.0.0.1:${nodes[4]?.address.port}`));
    await waitFor('n4 synced', () => (lastSyncs(ae)[4] as number) > 0, 5000);
    expect(lastSyncs(ae).slice(0, 4).every((t) => t >= joined)).toBe(true);

    presence.update(status('n3', `127.0.0.1:${nodes[3]?.address.port}`, 'offline'));
    await waitFor('n3 skipped twice', () => /node=n3,.*skipped_offline=[2-9]/.test(ae.peerLines().join('\n')), 5000);
    const synced = lastSyncs(ae)[3];
    const before = ae.syncs;
    await waitFor('the others synced again', () => ae.syncs >= before + 4, 5000);
    expect(lastSyncs(ae)[3]).toBe(synced);
    expect(ae.syncsFailed).toBe(0);

    presence.cleared('n3');
    expect(ae.peerLines().join('\n')).not.toMatch(/node=n3/);
  });
});

// With CI=true these run even if mosquitto is missing, and fail: CI must install it.
describe.runIf(hasMosquitto || process.env.CI === 'true')('peers found on Mosquitto', () => {
  it('a new node with only the broker address and the secret finds its peers and catches up; one away is skipped, a forged status ignored', async () => {
    const broker = await startMosquitto();
    const secret = 'discovery-secret';
    const start = (id: string): Promise<ClusterNode> =>
      startReplicatedNode(id, {
        'mqtt.broker_address': broker.url,
        cluster_secret: secret,
        'anti_entropy.discover_peers': 'true',
        'anti_entropy.interval_seconds': '1',
        'anti_entropy.max_concurrent_syncs': '1',
      });
    const nodes = [await start('node-1'), await start('node-2'), await start('node-3')];
    await waitFor('three nodes subscribed', () => nodes.every((m) => m.node.replicator?.stats.subscribed === true));
    for (const [i, m] of nodes.entries()) {
      for (let k = 0; k < 20; k++) void m.node.store.set(Buffer.from(`k${i}:${k}`), Buffer.from(`v${k}`));
    }
    await waitFor('the three replicate', () => nodes.every((m) => m.node.store.size === 60));

    // A node no broker queue knows (a new client id) and no peer_list: only discovery can fill it, by its
    // own exchanges (or, should their turn come first, the others'). keysReceived counts an exchange once it ends.
    const sent = (): number => nodes.reduce((n, m) => n + m.node.antiEntropy.keysSent, 0);
    const sentBefore = sent();
    const fourth = await start('node-4');
    const repaired = (): number => fourth.node.antiEntropy.keysReceived + sent() - sentBefore;
    await waitFor('node-4 filled by anti-entropy', () => fourth.node.store.size === 60 && repaired() >= 60, 10_000);
    expect(valueOn(fourth, 'k2:19')).toBe('v19');
    expect(fourth.node.replicator?.stats.appliedOps).toBe(0);
    const ae = fourth.node.antiEntropy;
    expect(ae.peerLines()).toHaveLength(3);

    // A forged status (unsigned) for a node at an address we watch: dropped, never dialled.
    let dialled = 0;
    const trap = createServer((s) => {
      dialled++;
      s.destroy();
    });
    await new Promise<void>((resolve) => trap.listen(0, '127.0.0.1', resolve));
    onTestFinished(() => new Promise<void>((resolve) => trap.close(() => resolve())));
    const rogue = await mqtt.connectAsync(broker.url, { clientId: 'rogue', reconnectPeriod: 0 });
    onTestFinished(() => rogue.endAsync(true));
    const rejected = fourth.node.replicator?.stats.rejected ?? 0;
    const forged = encodeStatus(status('ghost', `127.0.0.1:${(trap.address() as AddressInfo).port}`));
    await rogue.publishAsync('merkle-kv/nodes/ghost', forged, { qos: 1, retain: true });
    await waitFor('the forged status dropped', () => (fourth.node.replicator?.stats.rejected ?? 0) > rejected);

    // node-3 goes away (a clean stop says offline): skipped, not failed.
    await nodes[2]?.node.stop();
    await waitFor('node-4 sees node-3 offline', () => /node=node-3,.*state=offline/.test(ae.peerLines().join('\n')));
    const failed = ae.syncsFailed;
    await waitFor('node-3 skipped twice', () => /node=node-3,.*skipped_offline=[2-9]/.test(ae.peerLines().join('\n')), 10_000);
    expect(ae.syncsFailed).toBe(failed);
    expect(ae.peerLines().join('\n')).not.toMatch(/ghost/);
    expect(dialled).toBe(0);

    // Removed for good: its retained status cleared, node-4 forgets it.
    await rogue.publishAsync('merkle-kv/nodes/node-3', Buffer.alloc(0), { qos: 1, retain: true });
    await waitFor('node-3 forgotten', () => !/node=node-3/.test(ae.peerLines().join('\n')));
  }, 40_000);
});
