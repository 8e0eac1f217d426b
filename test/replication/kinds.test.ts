import { describe, expect, it } from 'vitest';
import { LineClient } from '../helpers.js';
import { startCluster, valueOn, waitFor } from './cluster.js';
import { hasMosquitto, startMosquitto } from './mosquitto.js';

// With CI=true these run even if mosquitto is missing, and fail: CI must install it.
const skip = !hasMosquitto && process.env.CI !== 'true';

describe.skipIf(skip)('counters and expiry through Mosquitto', () => {
  it('concurrent INC on 3 nodes ends at the exact total on every node', async () => {
    const broker = await startMosquitto();
    const nodes = await startCluster(3, broker.url);
    const clients = await Promise.all(nodes.map((m) => LineClient.connect(m.node.address.port)));
    const perNode = 300;
    // Every node increments the same fresh key at once, pipelined, so replicas see each other's
    // increments only after making their own.
    await Promise.all(
      clients.map(async (c, i) => {
        for (let j = 0; j < perNode; j++) c.send(`INC hits ${i + 1}\r\n`);
        const replies = await c.lines(perNode);
        expect(replies.every((r) => r.startsWith('VALUE '))).toBe(true);
      }),
    );
    const total = String(perNode * (1 + 2 + 3));
    for (const m of nodes) await waitFor(`the total on ${m.id}`, () => valueOn(m, 'hits') === total);
    const roots = new Set(nodes.map((m) => m.node.store.rootHash().toString('hex')));
    expect(roots.size).toBe(1);
    // A SET starts a new epoch everywhere; increments after it count from it.
    expect(await clients[0]?.call('SET hits 10')).toBe('OK');
    for (const m of nodes) await waitFor(`the reset on ${m.id}`, () => valueOn(m, 'hits') === '10');
    expect(await clients[1]?.call('DEC hits 4')).toBe('VALUE 6');
    expect(await clients[2]?.call('INC hits')).toMatch(/^VALUE (7|11)$/);
    for (const m of nodes) await waitFor(`6 + 1 on ${m.id}`, () => valueOn(m, 'hits') === '7');
  });

  it('a key with a 1-second TTL is gone on every node after it expires, and stays gone after a repair', async () => {
    const broker = await startMosquitto();
    const nodes = await startCluster(3, broker.url);
    const clients = await Promise.all(nodes.map((m) => LineClient.connect(m.node.address.port)));
    expect(await clients[0]?.call('SETEX session 1 token')).toBe('OK');
    expect(await clients[1]?.call('SET counter 1')).toBe('OK');
    for (const m of nodes) await waitFor(`the TTL key on ${m.id}`, () => valueOn(m, 'session') === 'token' && valueOn(m, 'counter') === '1');
    // EXPIRE on one node replicates as a register of the value's epoch.
    expect(await clients[2]?.call('EXPIRE counter 1')).toBe('OK');
    await waitFor('the expiry of counter everywhere', async () => (await Promise.all(clients.map((c) => c.call('TTL counter')))).every((t) => t === 'TTL 1'));
    await waitFor('both keys expired everywhere', async () => {
      const replies = await Promise.all(clients.map(async (c) => `${await c.call('GET session')} ${await c.call('GET counter')}`));
      return replies.every((r) => r === 'NOT_FOUND NOT_FOUND');
    }, 3000);
    for (const c of clients) expect(await c.call('DBSIZE')).toBe('DBSIZE 0');
    const ports = nodes.map((m) => m.node.address.port);
    expect(await clients[0]?.call(`SYNC 127.0.0.1 ${ports[1]}`)).toBe('OK');
    expect(await clients[2]?.call(`SYNC 127.0.0.1 ${ports[0]}`)).toBe('OK');
    for (const c of clients) expect(await c.call('GET session')).toBe('NOT_FOUND');
    expect(new Set(nodes.map((m) => m.node.store.rootHash().toString('hex'))).size).toBe(1);
  });
});
