import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import {
  ArgumentError,
  createClient,
  MerkleKVError,
  ReplyError,
  type ClientOptions,
  type MerkleKVClient,
} from '../../src/client/index.js';
import { startTestNode, tempDir } from '../helpers.js';

/** A connected client, disconnected when the test finishes. */
async function connected(port: number, options: ClientOptions = {}): Promise<MerkleKVClient> {
  const client = createClient({ port, ...options });
  onTestFinished(() => client.disconnect());
  await client.connect();
  return client;
}

describe('client commands', () => {
  it('strings and counters: GET, SET, DEL, INC, DEC, APPEND, PREPEND, with NOT_FOUND as null', async () => {
    const node = await startTestNode();
    const c = await connected(node.address.port);
    expect(await c.get('user:1')).toBeNull();
    expect(await c.set('user:1', 'alice smith')).toBeUndefined();
    expect(await c.get('user:1')).toBe('alice smith');
    // Spaces inside and at the start of a value travel; so do UTF-8 and tabs.
    await c.set('odd', '  two spaces first, a\ttab, héllo ✓');
    expect(await c.get('odd')).toBe('  two spaces first, a\ttab, héllo ✓');
    await c.set('n', 42);
    expect(await c.get('n')).toBe('42');
    expect(await c.append('user:1', ' jr')).toBe('alice smith jr');
    expect(await c.prepend('user:1', 'dr.')).toBe('dr.alice smith jr');
    expect(await c.prepend('fresh', 'made')).toBe('made');
    expect(await c.incr('hits')).toBe(1);
    expect(await c.incr('hits', 10)).toBe(11);
    expect(await c.decr('hits')).toBe(10);
    expect(await c.decr('hits', 15)).toBe(-5);
    expect(await c.incr('big', 9_007_199_254_740_000n)).toBe(9_007_199_254_740_000);
    expect(await c.del('user:1')).toBe(true);
    expect(await c.del('user:1')).toBe(false);
    expect(await c.get('user:1')).toBeNull();
  });

  it('expiry: SETEX, EXPIRE, TTL, PERSIST', async () => {
    const node = await startTestNode();
    const c = await connected(node.address.port);
    await c.setex('session', 100, 'token value');
    expect(await c.get('session')).toBe('token value');
    expect(await c.ttl('session')).toBe(100);
    await c.set('plain', 'v');
    expect(await c.ttl('plain')).toBe(-1);
    expect(await c.ttl('nobody')).toBeNull();
    expect(await c.expire('plain', 50)).toBe(true);
    expect(await c.ttl('plain')).toBe(50);
    expect(await c.persist('plain')).toBe(true);
    expect(await c.ttl('plain')).toBe(-1);
    expect(await c.expire('nobody', 5)).toBe(false);
    expect(await c.persist('nobody')).toBe(false);
    // As in Redis, 0 seconds deletes.
    expect(await c.expire('plain', 0)).toBe(true);
    expect(await c.get('plain')).toBeNull();
  });

  it('sets: SADD, SREM, SMEMBERS, SISMEMBER, SCARD', async () => {
    const node = await startTestNode();
    const c = await connected(node.address.port);
    expect(await c.sadd('tags', 'red', 'green', 'blue')).toBe(3);
    expect(await c.sadd('tags', 'red', 'black')).toBe(1);
    expect(await c.srem('tags', 'green', 'nope')).toBe(1);
    expect(await c.smembers('tags')).toEqual(['black', 'blue', 'red']);
    expect(await c.smembers('none')).toEqual([]);
    expect(await c.sismember('tags', 'red')).toBe(true);
    expect(await c.sismember('tags', 'green')).toBe(false);
    expect(await c.scard('tags')).toBe(3);
    expect(await c.scard('none')).toBe(0);
  });

  it('many keys: MGET, MSET, EXISTS, SCAN, DBSIZE', async () => {
    const node = await startTestNode();
    const c = await connected(node.address.port);
    await c.mset({ 'user:1': 'alice', 'user:2': 'bob', other: 3 });
    await c.mset(new Map([['user:3', 'carol']]));
    await c.mset([['x', 'y']]);
    expect(await c.mget('user:1', 'nobody', 'user:2')).toEqual(['alice', null, 'bob']);
    expect(await c.mget('nobody', 'nor-me')).toEqual([null, null]);
    expect(await c.exists('user:1', 'user:2', 'nobody', 'user:1')).toBe(3);
    expect(await c.scan()).toEqual(['other', 'user:1', 'user:2', 'user:3', 'x']);
    expect(await c.scan('user:')).toEqual(['user:1', 'user:2', 'user:3']);
    expect(await c.scan('zzz')).toEqual([]);
    expect(await c.dbsize()).toBe(5);
    // The protocol cannot tell a value that is the text NOT_FOUND from an absent key.
    await c.set('weird', 'NOT_FOUND');
    expect(await c.mget('weird', 'user:1')).toEqual([null, 'alice']);
    expect(await c.get('weird')).toBe('NOT_FOUND');
  });

  it('the node: PING, ECHO, STATS, INFO, MEMORY, CLIENT LIST, VERSION, HASH, REPLICATE, TRUNCATE, FLUSHDB', async () => {
    const node = await startTestNode();
    const c = await connected(node.address.port);
    expect(await c.ping()).toBe('PONG');
    expect(await c.ping('hello there')).toBe('hello there');
    expect(await c.echo('echo me')).toBe('echo me');
    const stats = await c.stats();
    expect(stats.node_id).toBe('test-node');
    expect(Number(stats.uptime_seconds)).toBeGreaterThanOrEqual(0);
    expect((await c.stats('storage')).storage_fsync).toBe('periodic');
    expect(Object.keys(await c.stats('all')).length).toBeGreaterThan(Object.keys(stats).length);
    const info = await c.info();
    expect(info).toMatchObject({ node_id: 'test-node', db_keys: '0' });
    expect(info.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(await c.version()).toBe(info.version);
    expect(await c.memory()).toBeGreaterThan(1_000_000);
    const clients = await c.clientList();
    expect(clients).toHaveLength(1);
    expect(clients[0]).toMatchObject({ addr: expect.stringMatching(/^127\.0\.0\.1:\d+$/) as unknown, cmd: 'client' });
    const empty = await c.hash();
    expect(empty).toMatch(/^[0-9a-f]{32}$/);
    await c.set('a:1', 'v');
    expect(await c.hash()).not.toBe(empty);
    expect(await c.hash('a:')).toMatch(/^[0-9a-f]{64}$/);
    const copy = join(tempDir(), 'backup');
    expect(await c.backup(copy)).toBe(copy);
    await expect(c.backup(copy)).rejects.toThrow(/already exists/);
    // A standalone node: replication is not configured.
    expect(await c.replicate('status')).toBe(false);
    await c.replicate('disable');
    await expect(c.replicate('enable')).rejects.toThrow('replication is not configured on this node');
    await c.truncate();
    expect(await c.dbsize()).toBe(0);
    await c.set('b', 'v');
    await c.flushdb();
    expect(await c.scan()).toEqual([]);
  });

  it('SYNC: one exchange with another node, --full and --verify', async () => {
    const a = await startTestNode({ node_id: 'a' });
    const b = await startTestNode({ node_id: 'b' });
    const ca = await connected(a.address.port);
    const cb = await connected(b.address.port);
    await ca.mset({ k1: 'v1', k2: 'v2' });
    await cb.sync('127.0.0.1', a.address.port);
    expect(await cb.mget('k1', 'k2')).toEqual(['v1', 'v2']);
    await ca.set('k3', 'v3');
    await cb.sync('127.0.0.1', a.address.port, { full: true, verify: true });
    expect(await cb.hash()).toBe(await ca.hash());
    const err = await cb.sync('127.0.0.1', 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReplyError);
    expect((err as ReplyError).message).toMatch(/^sync with 127\.0\.0\.1:1 failed/);
  });

  it('ERROR replies reject with ReplyError, the message kept, and the connection stays usable', async () => {
    const node = await startTestNode();
    const c = await connected(node.address.port);
    await c.set('word', 'abc');
    const notNumber = await c.incr('word').catch((e: unknown) => e);
    expect(notNumber).toBeInstanceOf(ReplyError);
    expect(notNumber).toBeInstanceOf(MerkleKVError);
    expect(notNumber).toMatchObject({ name: 'ReplyError', code: 'ERR_REPLY', command: 'INC', message: "Value for key 'word' is not a valid number" });
    await expect(c.sadd('word', 'm')).rejects.toThrow(new ReplyError('WRONGTYPE Operation against a key holding the wrong kind of value', 'SADD'));
    await c.sadd('set', 'm');
    await expect(c.get('set')).rejects.toMatchObject({ message: 'WRONGTYPE Operation against a key holding the wrong kind of value' });
    await expect(c.setex('k', 0, 'v')).rejects.toThrow("invalid expire time in 'setex' command");
    await expect(c.incr('huge', 2n ** 64n)).rejects.toThrow('INC command requires a key and an optional integer amount');
    expect(await c.get('word')).toBe('abc');
  });

  it('refuses what the protocol cannot carry with ArgumentError, sending nothing', async () => {
    const node = await startTestNode();
    const c = await connected(node.address.port);
    const refused = [
      c.get('a b'),
      c.get(''),
      c.set('k', 'two\nlines'),
      c.set('k', 'carriage\rreturn'),
      c.set('k', 'trailing space '),
      c.set('k', ''),
      c.set('k\n', 'v'),
      c.mset({ k: 'has space' }),
      c.mset({}),
      c.mget(),
      c.sadd('s'),
      c.sadd('s', 'bad member'),
      c.incr('n', 1.5),
      c.expire('k', Number.NaN),
      c.ping('x\r\nFLUSHDB'),
      c.echo(''),
      c.sync('127.0.0.1', 70000),
      c.auth('two words'),
      c.command('GET k\nFLUSHDB'),
      c.command('   '),
      c.command('quit'),
    ];
    for (const p of refused) await expect(p).rejects.toBeInstanceOf(ArgumentError);
    // Nothing reached the node: the replies that follow still match their requests.
    await c.set('k', 'v');
    expect(await c.get('k')).toBe('v');
    expect(await c.dbsize()).toBe(1);
  });

  it('checks its options when created', () => {
    expect(createClient().status).toBe('new');
    expect(() => createClient({ port: 0 })).toThrow(ArgumentError);
    expect(() => createClient({ port: 1.5 })).toThrow('port must be an integer in 1..65535, got 1.5');
    expect(() => createClient({ user: 'alice' })).toThrow('user needs a password');
    expect(() => createClient({ password: 'two words' })).toThrow(ArgumentError);
    expect(() => createClient({ timeout: -1 })).toThrow('timeout must be 0..2147483647 ms, got -1');
    expect(() => createClient({ reconnect: { maxDelay: Number.POSITIVE_INFINITY } })).toThrow(ArgumentError);
  });

  it('command() sends any line and resolves with the reply lines as sent, ERROR included', async () => {
    const node = await startTestNode();
    const c = await connected(node.address.port);
    expect(await c.command('set k hello world')).toEqual(['OK']);
    expect(await c.command('  GET k  ')).toEqual(['VALUE hello world']);
    expect(await c.command('SCAN')).toEqual(['KEYS 1', 'k']);
    expect(await c.command('MGET k nope')).toEqual(['VALUES 1', 'k hello world', 'nope NOT_FOUND']);
    expect(await c.command('BOGUS x')).toEqual(['ERROR Unknown command: BOGUS']);
    const stats = await c.command('STATS');
    expect(stats[0]).toBe('STATS');
    expect(stats[stats.length - 1]).toBe('END');
  });
});
