import { spawn } from 'node:child_process';
import mqtt from 'mqtt';
import { describe, expect, it, onTestFinished } from 'vitest';
import { formatHlc } from '../../src/hlc.js';
import { LineClient } from '../helpers.js';
import { startCluster, valueOn, waitFor, type ClusterNode } from './cluster.js';

async function clientOf(m: ClusterNode): Promise<LineClient> {
  return LineClient.connect(m.node.address.port);
}

describe('replication through the embedded Aedes broker', () => {
  it('carries every kind of mutation from each node to the others', async () => {
    const nodes = await startCluster(3);
    const clients = await Promise.all(nodes.map(clientOf));
    const [a, b, c] = clients as [LineClient, LineClient, LineClient];
    expect(await a.call('SET from:a alpha')).toBe('OK');
    expect(await b.call('SET from:b beta gamma')).toBe('OK');
    expect(await c.call('MSET m1 x m2 y')).toBe('OK');
    expect(await a.call('INC counter 5')).toBe('VALUE 5');
    expect(await b.call('APPEND from:a !')).toBe('VALUE alpha!');
    for (const m of nodes) {
      await waitFor(`writes on ${m.id}`, () =>
        valueOn(m, 'from:a') === 'alpha!' && valueOn(m, 'from:b') === 'beta gamma' && valueOn(m, 'm2') === 'y' && valueOn(m, 'counter') === '5',
      );
    }
    expect(await c.call('DEL from:b')).toBe('DELETED');
    for (const m of nodes) await waitFor(`delete on ${m.id}`, () => valueOn(m, 'from:b') === undefined);
    expect(await a.call('FLUSHDB')).toBe('OK');
    for (const m of nodes) await waitFor(`truncate on ${m.id}`, () => m.node.store.size === 0);
    expect(await b.call('GET m1')).toBe('NOT_FOUND');
  });

  it('converges on one value when nodes write the same key at once', async () => {
    const nodes = await startCluster(3);
    const clients = await Promise.all(nodes.map(clientOf));
    for (let round = 0; round < 20; round++) {
      await Promise.all(clients.map((c, i) => c.call(`SET contested n${i}-r${round}`)));
    }
    await waitFor('the same value everywhere', () => {
      const values = nodes.map((m) => valueOn(m, 'contested'));
      return values[0] !== undefined && values.every((v) => v === values[0]);
    });
    // Last writer wins on (hlc, node id): some write of the last rounds, the same on every node.
    expect(valueOn(nodes[0] as ClusterNode, 'contested')).toMatch(/^n[0-2]-r1[0-9]$/);
    // Same records, same versions: the same Merkle root everywhere.
    const roots = await Promise.all(clients.map((c) => c.call('HASH')));
    expect(new Set(roots).size).toBe(1);
  });

  it('applies duplicated and reordered messages idempotently, newest version winning', async () => {
    const nodes = await startCluster(2);
    const port = nodes[0]?.node.broker?.address.port as number;
    const peer = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'test-peer', protocolVersion: 4 });
    onTestFinished(() => peer.endAsync(true));
    const wall = Date.now();
    const msg = (val: string, counter: number): string =>
      JSON.stringify({ v: 1, node: 'node-9', ops: [{ op: 'set', key: 'k', val, hlc: formatHlc({ wall, counter }) }] });
    await peer.publishAsync('merkle-kv/updates/node-9', msg('newer', 2), { qos: 1 });
    await peer.publishAsync('merkle-kv/updates/node-9', msg('older', 1), { qos: 1 });
    await peer.publishAsync('merkle-kv/updates/node-9', msg('newer', 2), { qos: 1 });
    const del = JSON.stringify({ v: 1, node: 'node-9', ops: [{ op: 'del', key: 'gone', hlc: formatHlc({ wall, counter: 5 }) }] });
    const resurrect = JSON.stringify({ v: 1, node: 'node-9', ops: [{ op: 'set', key: 'gone', val: 'zombie', hlc: formatHlc({ wall, counter: 4 }) }] });
    await peer.publishAsync('merkle-kv/updates/node-9', del, { qos: 1 });
    await peer.publishAsync('merkle-kv/updates/node-9', resurrect, { qos: 1 });
    await peer.publishAsync('merkle-kv/updates/node-9', 'not json', { qos: 1 });
    for (const m of nodes) {
      await waitFor(`messages handled on ${m.id}`, () => (m.node.replicator?.stats.receivedMessages ?? 0) >= 6);
      expect(valueOn(m, 'k')).toBe('newer');
      expect(valueOn(m, 'gone')).toBeUndefined();
      const stats = m.node.replicator?.stats;
      expect(stats?.appliedOps).toBe(2);
      expect(stats?.ignoredOps).toBe(3);
      expect(stats?.invalid).toBe(1);
    }
  });

  it('reports replication counters in STATS', async () => {
    const nodes = await startCluster(2);
    const [a, b] = (await Promise.all(nodes.map(clientOf))) as [LineClient, LineClient];
    await a.call('SET s 1');
    await waitFor('the write on node-2', () => valueOn(nodes[1] as ClusterNode, 's') === '1');
    const lines = await b.stats();
    expect(lines).toContain('replication_connected:1');
    expect(lines).toContain('replication_applied_ops:1');
    expect(lines.some((l) => /^replication_lag_ms:\d+$/.test(l))).toBe(true);
  });

  it('publishes readable JSON that mosquitto_sub shows', async () => {
    const nodes = await startCluster(1);
    const port = nodes[0]?.node.broker?.address.port as number;
    // Two messages: the node's retained status (presence), then the update.
    const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-t', 'merkle-kv/#', '-v', '-C', '2', '-W', '10'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    onTestFinished(() => {
      sub.kill('SIGKILL');
    });
    let out = '';
    sub.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => sub.on('close', resolve));
    await new Promise((r) => setTimeout(r, 300)); // let it subscribe
    const c = await clientOf(nodes[0] as ClusterNode);
    expect(await c.call('SET user:1 alice')).toBe('OK');
    expect(await exited).toBe(0);
    const [status, update] = out.trim().split('\n').map((line) => [line.slice(0, line.indexOf(' ')), line.slice(line.indexOf(' ') + 1)]) as [[string, string], [string, string]];
    expect(status[0]).toBe('merkle-kv/nodes/node-1');
    expect(JSON.parse(status[1])).toMatchObject({ v: 1, node: 'node-1', state: 'online', address: `127.0.0.1:${nodes[0]?.node.address.port}` });
    expect(update[0]).toBe('merkle-kv/updates/node-1');
    expect(JSON.parse(update[1])).toMatchObject({ v: 1, node: 'node-1', ops: [{ op: 'set', key: 'user:1', val: 'alice' }] });
  });
});
