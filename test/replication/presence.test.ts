import mqtt from 'mqtt';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { AntiEntropy } from '../../src/antientropy/antientropy.js';
import { PeerProof } from '../../src/antientropy/handshake.js';
import { decodeStatus, encodeStatus, MAX_TRACKED_NODES, Presence, type NodeStatus } from '../../src/replication/presence.js';
import { Store } from '../../src/store/store.js';
import { LineClient, silent, tempDir } from '../helpers.js';
import { spawnNode } from '../process.js';
import { freePort, startCluster, startReplicatedNode, waitFor, type ClusterNode } from './cluster.js';
import { hasMosquitto, startMosquitto } from './mosquitto.js';

const status = (node: string, state: 'online' | 'offline', at: number, address = `127.0.0.1:${7000 + at}`): NodeStatus => ({ node, state, address, version: '1.0.0', at });

describe('presence statuses', () => {
  it('decodes what encodeStatus writes and refuses anything else', () => {
    const s = status('node-2', 'online', 5);
    expect(decodeStatus(encodeStatus(s))).toEqual(s);
    const bad = [
      '',
      'not json',
      '[]',
      JSON.stringify({ ...s, v: 2 }),
      JSON.stringify({ ...s, node: 'has space' }),
      JSON.stringify({ ...s, state: 'maybe' }),
      JSON.stringify({ ...s, address: 'a\nb' }),
      JSON.stringify({ ...s, at: -1 }),
      JSON.stringify({ ...s, version: 'x'.repeat(400) }),
    ];
    for (const b of bad) expect(decodeStatus(Buffer.from(b)), b).toBeUndefined();
  });

  it('keeps the newest status per node, tells listeners of changes only, and bounds what it tracks', () => {
    const p = new Presence('me');
    const changes: string[] = [];
    p.onChange((now, before) => changes.push(`${now.node}:${before?.state ?? 'none'}->${now.state}`));
    p.update(status('me', 'online', 1));
    p.update(status('b', 'online', 2, 'h:1'));
    p.update(status('b', 'online', 3, 'h:1'));
    p.update(status('b', 'offline', 1, 'h:1')); // older than what is known: a stale will
    p.update(status('b', 'offline', 4, 'h:1'));
    expect(changes).toEqual(['b:none->online', 'b:online->offline']);
    expect(p.get('me')).toBeUndefined();
    expect(p.byAddress('h:1')?.node).toBe('b');
    p.update(status('c', 'online', 5, 'h:1'));
    expect(p.byAddress('h:1')).toBeUndefined(); // two nodes claim it: neither is taken
    for (let i = 0; i < MAX_TRACKED_NODES + 10; i++) p.update(status(`n${i}`, 'online', 1));
    expect(p.all()).toHaveLength(MAX_TRACKED_NODES);
  });

  it('forgets a node whose status is cleared, only if it is offline (an empty message cannot be signed)', () => {
    const p = new Presence('me');
    const forgotten: string[] = [];
    p.onForget((node) => forgotten.push(node));
    p.update(status('up', 'online', 1));
    p.update(status('gone', 'offline', 1));
    for (const node of ['up', 'gone', 'unknown']) p.cleared(node);
    expect(forgotten).toEqual(['gone']);
    expect(p.all().map((s) => s.node)).toEqual(['up']);
  });

  it('anti-entropy skips a peer the broker reports offline, and syncs at once when it is back', async () => {
    const store = Store.open({ path: join(tempDir(), 'db'), nodeId: 'a', maxClockSkewMs: 60_000, tombstoneGraceSeconds: 86_400, logger: silent });
    onTestFinished(() => store.close());
    const presence = new Presence('a');
    const port = await freePort(); // nothing listens there
    const address = `127.0.0.1:${port}`;
    presence.update(status('b', 'offline', 1, address));
    let brokerConnected = true;
    const ae = new AntiEntropy({
      store,
      nodeId: 'a',
      limits: { maxKeyBytes: 512, maxValueBytes: 1024 },
      proof: new PeerProof(''),
      enabled: true,
      peers: [address],
      intervalMs: 100,
      maxConcurrent: 1,
      presence,
      brokerConnected: () => brokerConnected,
      logger: silent,
      timeoutMs: 500,
    });
    onTestFinished(() => ae.stop());
    ae.start();
    await waitFor('two skipped rounds', () => /skipped_offline=[2-9]/.test(ae.peerLines()[0] ?? ''), 5000);
    expect(ae.syncsFailed).toBe(0);
    expect(ae.peerLines()).toEqual([expect.stringMatching(new RegExp(`^peer0:node=b,address=${address},state=offline,version=1.0.0,last_sync=0,`))]);
    // Back online (still unreachable here): it is tried at once, and fails like any unreachable peer.
    presence.update(status('b', 'online', 2, address));
    await waitFor('an attempt', () => ae.syncsFailed > 0, 3000);
    expect(ae.peerLines()[0]).toMatch(/state=online/);
    // Cut off from the broker, this node cannot know: an offline status no longer keeps it from trying.
    presence.update(status('b', 'offline', 3, address));
    brokerConnected = false;
    const failed = ae.syncsFailed;
    await waitFor('tried though reported offline', () => ae.syncsFailed > failed, 5000);
  });
});

describe('presence through the embedded broker', () => {
  it('with a cluster secret, statuses are signed and an unsigned one is dropped', async () => {
    const [a, b] = (await startCluster(2, undefined, () => ({ cluster_secret: 'presence-secret' }))) as [ClusterNode, ClusterNode];
    await waitFor('node-1 sees node-2 online', () => a.node.antiEntropy.peerLines().some((l) => /node=node-2,.*state=online/.test(l)));
    await waitFor('node-2 sees node-1 online', () => b.node.antiEntropy.peerLines().some((l) => /node=node-1,.*state=online/.test(l)));
    const rogue = await mqtt.connectAsync(`mqtt://127.0.0.1:${a.node.broker?.address.port}`, { clientId: 'rogue', protocolVersion: 4, reconnectPeriod: 0 });
    onTestFinished(() => rogue.endAsync(true));
    const rejected = a.node.replicator?.stats.rejected ?? 0;
    await rogue.publishAsync('merkle-kv/nodes/node-2', Buffer.from(encodeStatus(status('node-2', 'offline', Date.now() + 60_000))), { qos: 1, retain: true });
    await waitFor('the unsigned status dropped', () => (a.node.replicator?.stats.rejected ?? 0) > rejected);
    expect(a.node.antiEntropy.peerLines().join('\n')).toMatch(/node=node-2,.*state=online/);
  });
});

describe.runIf(hasMosquitto || process.env.CI === 'true')('presence through Mosquitto', () => {
  it('a node is online with its address while up, offline when killed, and repaired as soon as it is back', async () => {
    const broker = await startMosquitto();
    const watcher = await mqtt.connectAsync(broker.url, { clientId: 'watcher' });
    onTestFinished(() => watcher.endAsync(true));
    const seen = new Map<string, string>();
    watcher.on('message', (topic, payload) => seen.set(topic, payload.toString()));
    await watcher.subscribeAsync('merkle-kv/nodes/#', { qos: 1 });

    // b: a process we can kill; a clean session, so only anti-entropy can bring it what it missed; no
    // peers of its own (none listed, none discovered), so only a's exchanges can.
    const bDir = join(tempDir(), 'b');
    const bEnv = {
      MERKLE_KV_MQTT_ENABLED: 'true',
      MERKLE_KV_MQTT_BROKER_ADDRESS: broker.url,
      MERKLE_KV_MQTT_CLEAN_SESSION: 'true',
      MERKLE_KV_ANTI_ENTROPY_PEER_LIST: '',
      MERKLE_KV_ANTI_ENTROPY_DISCOVER_PEERS: 'false',
    };
    let b = await spawnNode(['--node-id', 'b', '--data-dir', bDir], { env: bEnv });
    await waitFor('b online', () => /"state":"online"/.test(seen.get('merkle-kv/nodes/b') ?? ''));
    expect(JSON.parse(seen.get('merkle-kv/nodes/b') as string)).toMatchObject({ node: 'b', address: `127.0.0.1:${b.port}` });

    // a: its periodic exchanges an hour apart, so only b's return can explain a quick repair.
    const a = await startReplicatedNode('a', {
      'mqtt.broker_address': broker.url,
      'anti_entropy.peer_list': `127.0.0.1:${b.port}`,
      'anti_entropy.interval_seconds': '3600',
    });
    const client = await LineClient.connect(a.node.address.port);
    await waitFor('a sees b online', async () => /state=online/.test((await client.stats('STATS peers')).join('\n')));
    // a's first exchange with b (soon after start); the next periodic one is an hour away.
    await waitFor('a synced with b once', async () => /last_sync=[1-9]/.test((await client.stats('STATS peers')).join('\n')), 10_000);
    const syncs = a.node.antiEntropy.syncs;

    const bPort = b.port;
    b.child.kill('SIGKILL');
    await b.exited;
    await waitFor('b offline', () => /"state":"offline"/.test(seen.get('merkle-kv/nodes/b') ?? ''));
    await waitFor('a sees b offline', async () => /peer0:node=b,.*state=offline/.test((await client.stats('STATS peers')).join('\n')));
    expect(await client.call('SET while-away 1')).toBe('OK');

    b = await spawnNode(['--node-id', 'b', '--data-dir', bDir, '--port', String(bPort)], { env: bEnv });
    const reader = await LineClient.connect(b.port);
    await waitFor('b repaired by a as soon as it is online', async () => (await reader.call('GET while-away')) === 'VALUE 1', 5000);
    expect(a.node.antiEntropy.syncs).toBe(syncs + 1);
    await waitFor('a sees b online again', async () => /peer0:node=b,.*state=online/.test((await client.stats('STATS peers')).join('\n')));
  }, 60_000);
});
