import { spawn } from 'node:child_process';
import mqtt from 'mqtt';
import { describe, expect, it, onTestFinished } from 'vitest';
import { encodeMessages } from '../../src/replication/message.js';
import { plainState } from '../../src/store/state.js';
import { certsForFile } from '../certs.js';
import { LineClient } from '../helpers.js';
import { startCluster, startReplicatedNode, valueOn, waitFor, type ClusterNode } from '../replication/cluster.js';
import { hasMosquitto, startMosquitto } from '../replication/mosquitto.js';

const skip = !hasMosquitto && process.env.CI !== 'true';
const creds = { 'mqtt.username': 'cluster', 'mqtt.password': 'broker-pass' };

function forged(node: string, key: string): Buffer {
  const [payload] = encodeMessages(node, [{ key: Buffer.from(key), state: plainState({ wall: Date.now(), counter: 0, node }, Buffer.from('forged')) }], 1 << 20);
  return payload as Buffer;
}

describe('the embedded broker with credentials', () => {
  it('replicates between nodes that hold them, refuses clients that do not', async () => {
    const nodes = await startCluster(2, undefined, () => creds);
    const [a, b] = nodes as [ClusterNode, ClusterNode];
    const c = await LineClient.connect(a.node.address.port);
    expect(await c.call('SET k v')).toBe('OK');
    await waitFor('the write on node-2', () => valueOn(b, 'k') === 'v');

    const url = `mqtt://127.0.0.1:${a.node.broker?.address.port}`;
    for (const options of [{}, { username: 'cluster', password: 'wrong' }, { username: 'someone', password: 'broker-pass' }]) {
      await expect(mqtt.connectAsync(url, { ...options, clientId: 'stranger', protocolVersion: 4, reconnectPeriod: 0 })).rejects.toThrow(
        /Bad username or password/,
      );
    }
    // Not spawnSync: the broker runs in this process and must answer meanwhile.
    const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(a.node.broker?.address.port), '-t', '#', '-C', '1', '-W', '5'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    onTestFinished(() => void sub.kill('SIGKILL'));
    let said = '';
    sub.stdout.on('data', (d: Buffer) => (said += d.toString()));
    sub.stderr.on('data', (d: Buffer) => (said += d.toString()));
    const status = await new Promise((resolve) => sub.on('close', resolve));
    expect(status).not.toBe(0);
    expect(said).toContain('Connection Refused: bad user name or password');
  });

  it("lets a node publish only to its own topic: a publish to another node's topic is dropped and the client cut off", async () => {
    const nodes = await startCluster(2, undefined, () => creds);
    const url = `mqtt://127.0.0.1:${nodes[0]?.node.broker?.address.port}`;
    const rogue = await mqtt.connectAsync(url, { ...creds2(), clientId: 'node-9', protocolVersion: 4, reconnectPeriod: 0 });
    onTestFinished(() => rogue.endAsync(true));
    const closed = new Promise<void>((resolve) => rogue.once('close', () => resolve()));
    rogue.publish('merkle-kv/updates/node-1', forged('node-1', 'as-node-1'), { qos: 1 });
    await closed;

    const honest = await mqtt.connectAsync(url, { ...creds2(), clientId: 'node-9', protocolVersion: 4, reconnectPeriod: 0 });
    onTestFinished(() => honest.endAsync(true));
    await honest.publishAsync('merkle-kv/updates/node-9', forged('node-9', 'own-topic'), { qos: 1 });
    for (const m of nodes) await waitFor(`own-topic on ${m.id}`, () => valueOn(m, 'own-topic') === 'forged');
    for (const m of nodes) expect(valueOn(m, 'as-node-1')).toBeUndefined();
  });

  it("lets a node publish its own status (presence) but not another node's", async () => {
    const nodes = await startCluster(2, undefined, () => creds);
    const [a, b] = nodes as [ClusterNode, ClusterNode];
    await waitFor('node-1 sees node-2 online', () => a.node.antiEntropy.peerLines().some((l) => /node=node-2,.*state=online/.test(l)));
    const url = `mqtt://127.0.0.1:${a.node.broker?.address.port}`;
    const rogue = await mqtt.connectAsync(url, { ...creds2(), clientId: 'node-9', protocolVersion: 4, reconnectPeriod: 0 });
    onTestFinished(() => rogue.endAsync(true));
    const closed = new Promise<void>((resolve) => rogue.once('close', () => resolve()));
    const lie = { v: 1, node: 'node-2', state: 'offline', address: 'x:1', version: '0', at: Date.now() + 60_000 };
    rogue.publish('merkle-kv/nodes/node-2', JSON.stringify(lie), { qos: 1, retain: true });
    await closed;
    expect(a.node.antiEntropy.peerLines().join('\n')).toMatch(/node=node-2,.*state=online/);
    // Its own status is allowed.
    const honest = await mqtt.connectAsync(url, { ...creds2(), clientId: 'node-9', protocolVersion: 4, reconnectPeriod: 0 });
    onTestFinished(() => honest.endAsync(true));
    await honest.publishAsync('merkle-kv/nodes/node-9', JSON.stringify({ ...lie, node: 'node-9', state: 'online' }), { qos: 1 });
    await waitFor('node-2 sees node-9', () => b.node.antiEntropy.peerLines().some((l) => /node=node-9,.*state=online/.test(l)));
  });
});

function creds2(): { username: string; password: string } {
  return { username: creds['mqtt.username'], password: creds['mqtt.password'] };
}

describe.skipIf(skip)('Mosquitto with credentials and TLS', () => {
  const certs = certsForFile();

  it('replicates over mqtts:// with a private CA (ca_file) and a password', async () => {
    const broker = await startMosquitto({ users: { cluster: 'broker-pass' }, tls: certs });
    expect(broker.url).toMatch(/^mqtts:/);
    const nodes = await startCluster(2, broker.url, () => ({ ...creds, 'mqtt.ca_file': certs.caCert }));
    const c = await LineClient.connect(nodes[0]?.node.address.port as number);
    expect(await c.call('SET over:tls yes')).toBe('OK');
    await waitFor('the write on node-2', () => valueOn(nodes[1] as ClusterNode, 'over:tls') === 'yes');
  });

  it('does not connect to a broker whose certificate it cannot verify, nor with a wrong password', async () => {
    const broker = await startMosquitto({ users: { cluster: 'broker-pass' }, tls: certs });
    const untrusting = await startReplicatedNode('node-x', { 'mqtt.broker_address': broker.url, ...creds });
    const wrong = await startReplicatedNode('node-y', { 'mqtt.broker_address': broker.url, ...creds, 'mqtt.password': 'nope', 'mqtt.ca_file': certs.caCert });
    await new Promise((r) => setTimeout(r, 1500));
    expect(untrusting.node.replicator?.stats.connected).toBe(false);
    expect(wrong.node.replicator?.stats.connected).toBe(false);
  });
});
