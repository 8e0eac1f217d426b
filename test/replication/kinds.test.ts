import { describe, expect, it } from 'vitest';
import { LineClient } from '../helpers.js';
import { startCluster, valueOn, waitFor } from './cluster.js';
import { hasMosquitto, startMosquitto } from './mosquitto.js';

// With CI=true these run even if mosquitto is missing, and fail: CI must install it.
const skip = !hasMosquitto && process.env.CI !== 'true';

describe.skipIf(skip)('counters, sets and expiry through Mosquitto', () => {
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

  it('sets: members added at once on 3 nodes all count, and an add concurrent with a remove survives everywhere', async () => {
    const broker = await startMosquitto();
    const nodes = await startCluster(3, broker.url);
    const clients = await Promise.all(nodes.map((m) => LineClient.connect(m.node.address.port)));
    // Three nodes make the same fresh set at once, each with its own members.
    await Promise.all(
      clients.map(async (c, i) => {
        for (let j = 0; j < 100; j++) c.send(`SADD tags n${i}-${j} shared\r\n`);
        const replies = await c.lines(100);
        expect(replies.every((r) => /^SADD [12]$/.test(r))).toBe(true);
      }),
    );
    const card = async (c: LineClient, key: string): Promise<string> => c.call(`SCARD ${key}`);
    await waitFor('301 members everywhere', async () => (await Promise.all(clients.map((c) => card(c, 'tags')))).every((r) => r === 'SCARD 301'));
    // A remove on one node and an add of the same member on another, at the same moment: the
    // remove saw only the older adds, so the member stays, everywhere.
    const [a, b, c] = clients as [LineClient, LineClient, LineClient];
    b.send('SREM tags shared n0-0\r\n');
    c.send('SADD tags shared\r\n');
    expect(await b.lines(1)).toEqual(['SREM 2']);
    // (SADD 1 if the remove reached c first: then the add simply follows it.)
    expect((await c.lines(1))[0]).toMatch(/^SADD [01]$/);
    await waitFor('n0-0 removed everywhere', async () => (await Promise.all(clients.map((x) => card(x, 'tags')))).every((r) => r === 'SCARD 300'));
    for (const x of clients) expect(await x.call('SISMEMBER tags shared')).toBe('1');
    // A remove that has seen every add removes the member everywhere.
    await waitFor('the same root everywhere', () => new Set(nodes.map((m) => m.node.store.rootHash().toString('hex'))).size === 1);
    expect(await a.call('SREM tags shared')).toBe('SREM 1');
    await waitFor('shared removed everywhere', async () => (await Promise.all(clients.map((x) => x.call('SISMEMBER tags shared')))).every((r) => r === '0'));
    expect(new Set(await Promise.all(clients.map((x) => x.members('tags')))).size).toBe(1);
    // DEL removes the set everywhere; a set made after it starts empty.
    expect(await b.call('DEL tags')).toBe('DELETED');
    await waitFor('tags deleted everywhere', async () => (await Promise.all(clients.map((x) => card(x, 'tags')))).every((r) => r === 'SCARD 0'));
    expect(await c.call('SADD tags fresh')).toBe('SADD 1');
    await waitFor('the new set everywhere', async () => (await Promise.all(clients.map((x) => x.members('tags')))).every((r) => r === 'MEMBERS 1\nfresh'));
  });
});
