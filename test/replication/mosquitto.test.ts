import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LineClient, tempDir } from '../helpers.js';
import { spawnNode } from '../process.js';
import { freePort, startCluster, valueOn, waitFor } from './cluster.js';
import { hasMosquitto, startMosquitto } from './mosquitto.js';

// With CI=true these run even if mosquitto is missing, and fail: CI must install it.
const skip = !hasMosquitto && process.env.CI !== 'true';

describe.skipIf(skip)('replication through Mosquitto', () => {
  it('carries writes and deletes between three nodes (MQTT 5, no-local)', async () => {
    const broker = await startMosquitto();
    const nodes = await startCluster(3, broker.url);
    const clients = await Promise.all(nodes.map((m) => LineClient.connect(m.node.address.port)));
    for (const [i, c] of clients.entries()) expect(await c.call(`SET key:${i} value-${i}`)).toBe('OK');
    for (const m of nodes) {
      await waitFor(`writes on ${m.id}`, () => [0, 1, 2].every((i) => valueOn(m, `key:${i}`) === `value-${i}`));
    }
    expect(await clients[0]?.call('DEL key:2')).toBe('DELETED');
    for (const m of nodes) {
      await waitFor(`delete on ${m.id}`, () => valueOn(m, 'key:2') === undefined);
      // No-local: a node never receives its own messages back.
      expect(m.node.replicator?.stats.ignoredOps).toBe(0);
    }
  });

  it('carries by anti-entropy the writes the broker could not, while it is down', async () => {
    const broker = await startMosquitto();
    const ports = [await freePort(), await freePort()];
    const peers = ports.map((p) => `127.0.0.1:${p}`).join(',');
    const nodes = await startCluster(2, broker.url, (i) => ({
      'network.bind_port': String(ports[i]),
      'anti_entropy.peer_list': peers,
      'anti_entropy.interval_seconds': '1',
    }));
    const a = await LineClient.connect(nodes[0]!.node.address.port);
    await broker.stop();
    await waitFor('outage noticed', () => nodes.every((m) => m.node.replicator?.stats.connected === false));
    for (let i = 0; i < 20; i++) expect(await a.call(`SET during:${i} ${i}`)).toBe('OK');
    expect(await a.call('DEL during:0')).toBe('DELETED');
    const root = (i: number): string => nodes[i]!.node.store.rootHash().toString('hex');
    await waitFor('writes repaired on node 2', () => valueOn(nodes[1]!, 'during:19') === '19' && root(0) === root(1), 15_000);
    expect(valueOn(nodes[1]!, 'during:0')).toBeUndefined();
    expect(valueOn(nodes[1]!, 'during:7')).toBe('7');
    expect(nodes[0]!.node.replicator?.stats.publishFailures).toBeGreaterThanOrEqual(1);
  });

});

describe.skipIf(skip).each(['periodic', 'always'] as const)('replication through Mosquitto, fsync = %s', (fsync) => {
  it('loses nothing on a replica killed with SIGKILL while writes stream in, nor what was written while it was down', async () => {
    const broker = await startMosquitto();
    const [writer] = await startCluster(1, broker.url, () => ({ 'storage.fsync': fsync }));
    const dir = join(tempDir(), 'node-2');
    const env = { MERKLE_KV_MQTT_ENABLED: 'true', MERKLE_KV_MQTT_BROKER_ADDRESS: broker.url };
    const args = ['--node-id', 'node-2', '--data-dir', dir, '--log-format', 'json', '--fsync', fsync];
    const first = await spawnNode(args, { env });
    const c = await LineClient.connect(first.port);
    await waitFor('node-2 subscribed', async () => (await c.stats()).includes('replication_subscribed:1'));
    const w = await LineClient.connect(writer?.node.address.port as number);
    // Pipelined writes on the origin; the replica dies while applying them, and more come while it is down.
    let acked = 0;
    const writing = (async () => {
      for (let round = 0; round < 40; round++) {
        w.send(Array.from({ length: 25 }, (_, i) => `SET k:${round * 25 + i} ${round}\r\n`).join(''));
        const replies = await w.lines(25);
        acked += replies.filter((r) => r === 'OK').length;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
    await waitFor('some writes applied on node-2', async () => Number(/DBSIZE (\d+)/.exec(await c.call('DBSIZE'))?.[1]) > 50);
    first.child.kill('SIGKILL');
    await first.exited;
    await writing;
    expect(acked).toBe(1000);
    const again = await spawnNode(args, { env });
    const d = await LineClient.connect(again.port);
    await waitFor('every write delivered', async () => (await d.call('DBSIZE')) === 'DBSIZE 1000', 20_000);
    expect(await d.call('GET k:999')).toBe('VALUE 39');
    expect(await d.call('HASH')).toBe(await w.call('HASH'));
  });

  it('keeps accepting writes while the broker restarts, then replicates again', async () => {
    const broker = await startMosquitto();
    const nodes = await startCluster(2, broker.url, () => ({ 'storage.fsync': fsync }));
    const [a, b] = await Promise.all(nodes.map((m) => LineClient.connect(m.node.address.port)));
    expect(await a?.call('SET before 1')).toBe('OK');
    await waitFor('first write replicated', () => valueOn(nodes[1]!, 'before') === '1');
    await broker.stop();
    await waitFor('outage noticed', () => nodes.every((m) => m.node.replicator?.stats.connected === false));
    expect(await a?.call('SET during 2')).toBe('OK');
    expect(await b?.call('GET before')).toBe('VALUE 1');
    expect(await (a as LineClient).stats()).toContain('replication_connected:0');
    await broker.restart();
    await waitFor('reconnected', () => nodes.every((m) => m.node.replicator?.stats.subscribed === true), 20_000);
    expect(await b?.call('SET after 3')).toBe('OK');
    await waitFor('write after restart replicated', () => valueOn(nodes[0]!, 'after') === '3');
    expect(nodes[0]?.node.replicator?.stats.publishFailures).toBeGreaterThanOrEqual(1);
  });
});
