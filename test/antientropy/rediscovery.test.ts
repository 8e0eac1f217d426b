import { describe, expect, it } from 'vitest';
import type { AntiEntropy } from '../../src/antientropy/antientropy.js';
import { PeerSet } from '../../src/antientropy/rotation.js';
import type { NodeStatus } from '../../src/replication/presence.js';
import { reloadableNode } from '../config/reloadable.js';
import { startTestNode } from '../helpers.js';
import { startCluster, startReplicatedNode, waitFor } from '../replication/cluster.js';

/** When this node's last exchange with the peer at 127.0.0.1:`port` succeeded (0: never); undefined: it is no peer. */
function lastSync(ae: AntiEntropy, port: number): number | undefined {
  const line = ae.statsLines().find((l) => l.startsWith(`anti_entropy_peer_127.0.0.1_${port}_last_sync:`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(':') + 1));
}

const status = (node: string, address: string): NodeStatus => ({ node, state: 'online', address, version: '0.1.0', at: Date.now() });

describe('who the peers are, re-read', () => {
  it('PeerSet.refresh: the list as it is now, found peers added (or dropped without discovery); a found peer listed keeps its history', () => {
    const set = new PeerSet(['127.0.0.1:7001', '127.0.0.1:7002']);
    expect(set.refresh(['127.0.0.1:7001'], [status('c', '127.0.0.1:7003')]).map((p) => p.address)).toEqual(['127.0.0.1:7003']);
    expect(set.all.map((p) => [p.address, p.listed])).toEqual([
      ['127.0.0.1:7001', true],
      ['127.0.0.1:7003', false],
    ]);
    const found = set.all[1];
    if (found === undefined) throw new Error('no found peer');
    found.lastSyncAt = 42;
    // Listed now: the same peer, with its history; nothing new.
    expect(set.refresh(['127.0.0.1:7001', '127.0.0.1:7003'], [status('c', '127.0.0.1:7003')])).toEqual([]);
    expect(set.all[1]).toMatchObject({ listed: true, lastSyncAt: 42 });
    // Without discovery only the listed peers remain; a known status adds nothing twice.
    set.track(status('d', '127.0.0.1:7004'));
    expect(set.refresh(['127.0.0.1:7001'], undefined)).toEqual([]);
    expect(set.all.map((p) => p.address)).toEqual(['127.0.0.1:7001']);
  });

  it('a peer added to peer_list by a reload is exchanged with within about interval_seconds; one taken out is dropped', async () => {
    const b = await startTestNode({ node_id: 'b' });
    await b.store.set(Buffer.from('from:b'), Buffer.from('1'));
    const settings: Record<string, string> = { node_id: 'a', 'anti_entropy.interval_seconds': '1' };
    const a = await reloadableNode(settings);
    expect(lastSync(a.antiEntropy, b.address.port)).toBeUndefined();

    settings['anti_entropy.peer_list'] = `127.0.0.1:${b.address.port}`;
    const reloaded = Date.now();
    expect(a.reload()).toEqual({ ok: true, applied: ['anti_entropy.peer_list'], restart: [] });
    await waitFor('a synced with b', () => (lastSync(a.antiEntropy, b.address.port) ?? 0) > 0, 5000);
    expect(Date.now() - reloaded).toBeLessThan(1200 + 1000);
    expect(a.store.readValue(Buffer.from('from:b')).value?.toString()).toBe('1');

    settings['anti_entropy.peer_list'] = '';
    expect(a.reload()).toMatchObject({ ok: true, applied: ['anti_entropy.peer_list'] });
    expect(lastSync(a.antiEntropy, b.address.port)).toBeUndefined();
  });

  it('a node that appears on the broker joins the peers of a node that has caught up within peer_discovery_interval', async () => {
    const flags = { 'anti_entropy.discover_peers': 'true', 'anti_entropy.interval_seconds': '1', 'anti_entropy.peer_discovery_interval': '2' };
    const [first] = await startCluster(2, undefined, () => flags);
    if (first === undefined) throw new Error('no cluster');
    const ae = first.node.antiEntropy;
    // node-1 finds node-2 at once (it has not caught up yet) and syncs with it.
    await waitFor('node-1 caught up', () => ae.syncs > 0, 5000);

    const third = await startReplicatedNode('node-3', { 'mqtt.broker_address': `mqtt://127.0.0.1:${first.node.broker?.address.port}`, ...flags });
    await waitFor('node-1 hears of node-3', () => ae.peerLines().some((l) => l.includes('node=node-3,') && l.includes('state=online')));
    const heard = Date.now();
    await waitFor('node-1 synced with node-3', () => (lastSync(ae, third.node.address.port) ?? 0) > 0, 8000);
    // The next refresh (at most 2 s away), then the next round (at most 1.2 s), and the exchange.
    expect(Date.now() - heard).toBeLessThan(2000 + 1200 + 1500);
  });
});
