import { describe, expect, it } from 'vitest';
import type { RunningNode } from '../../src/node.js';
import { decodeCounter } from '../../src/store/counter.js';
import { KIND, kindFlags } from '../../src/store/record.js';
import { stateOf } from '../../src/store/state.js';
import { LineClient, startTestNode, tempDir } from '../helpers.js';

async function node(flags: Record<string, string> = {}): Promise<[RunningNode, LineClient]> {
  const n = await startTestNode(flags);
  return [n, await LineClient.connect(n.address.port)];
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('counters', () => {
  it('are PN-counters that GET, EXISTS, SCAN and DBSIZE see as decimal values', async () => {
    const [n, c] = await node();
    expect(await c.call('INC hits')).toBe('VALUE 1');
    expect(await c.call('INCR hits 9')).toBe('VALUE 10');
    expect(await c.call('DEC hits 3')).toBe('VALUE 7');
    expect(await c.call('GET hits')).toBe('VALUE 7');
    expect(await c.call('MGET hits none')).toBe('VALUES 1');
    expect(await c.lines(2)).toEqual(['hits 7', 'none NOT_FOUND']);
    expect(await c.call('EXISTS hits')).toBe('EXISTS 1');
    expect(await c.call('DBSIZE')).toBe('DBSIZE 1');
    expect(await c.call('SCAN h')).toBe('KEYS 1');
    expect(await c.lines(1)).toEqual(['hits']);
    const state = stateOf(n.store.read(Buffer.from('hits')).value as Buffer);
    expect(state.flags).toBe(kindFlags(KIND.counter));
    // One entry for this node (under the name its counter totals go under), whatever the number of increments.
    expect(decodeCounter(state.payload)).toMatchObject({ base: 0n, entries: [{ node: n.store.counterWriter, p: 10n, n: 3n }] });
    expect(state.payload.length).toBe(10 + 1 + Buffer.byteLength(n.store.counterWriter) + 24);
  });

  it('grow out of a plain integer, keeping its epoch; SET, DEL and APPEND make them plain again', async () => {
    const [n, c] = await node();
    expect(await c.call('SET n 5')).toBe('OK');
    const epoch = stateOf(n.store.read(Buffer.from('n')).value as Buffer).epoch;
    expect(await c.call('INC n 2')).toBe('VALUE 7');
    expect(stateOf(n.store.read(Buffer.from('n')).value as Buffer).epoch).toEqual(epoch);
    expect(await c.call('APPEND n 0')).toBe('VALUE 70');
    expect(stateOf(n.store.read(Buffer.from('n')).value as Buffer).flags).toBe(0);
    expect(await c.call('INC n')).toBe('VALUE 71');
    expect(await c.call('SET n 1')).toBe('OK');
    expect(await c.call('INC n')).toBe('VALUE 2');
    expect(await c.call('DEL n')).toBe('DELETED');
    expect(await c.call('GET n')).toBe('NOT_FOUND');
    expect(await c.call('INC n')).toBe('VALUE 1');
    expect(await c.call('PREPEND n -')).toBe('VALUE -1');
    expect(await c.call('DEC n')).toBe('VALUE -2');
  });

  it('refuse to leave the signed 64-bit range, and non-numbers', async () => {
    const [, c] = await node();
    expect(await c.call('INC c 9223372036854775807')).toBe('VALUE 9223372036854775807');
    expect(await c.call('INC c')).toBe('ERROR increment or decrement would overflow');
    expect(await c.call('DEC d 9223372036854775807')).toBe('VALUE -9223372036854775807');
    expect(await c.call('DEC d 2')).toBe('ERROR increment or decrement would overflow');
    expect(await c.call('GET c')).toBe('VALUE 9223372036854775807');
    expect(await c.call('SET w hello')).toBe('OK');
    expect(await c.call('INC w')).toBe("ERROR Value for key 'w' is not a valid number");
    expect(await c.call('INC c 9223372036854775808')).toMatch(/^ERROR INC command requires/);
  });
});

describe('expiry', () => {
  it('SETEX, TTL, EXPIRE and PERSIST answer as DESIGN section 2 says', async () => {
    const [, c] = await node();
    expect(await c.call('SETEX s 100 a value')).toBe('OK');
    expect(await c.call('GET s')).toBe('VALUE a value');
    expect(await c.call('TTL s')).toBe('TTL 100');
    expect(await c.call('TTL none')).toBe('NOT_FOUND');
    expect(await c.call('SET p v')).toBe('OK');
    expect(await c.call('TTL p')).toBe('TTL -1');
    expect(await c.call('EXPIRE p 50')).toBe('OK');
    expect(await c.call('TTL p')).toBe('TTL 50');
    expect(await c.call('PERSIST p')).toBe('OK');
    expect(await c.call('TTL p')).toBe('TTL -1');
    expect(await c.call('PERSIST p')).toBe('OK');
    expect(await c.call('PERSIST none')).toBe('NOT_FOUND');
    expect(await c.call('EXPIRE none 5')).toBe('NOT_FOUND');
    // SET clears a TTL, as in Redis; INC keeps it.
    expect(await c.call('SET s other')).toBe('OK');
    expect(await c.call('TTL s')).toBe('TTL -1');
    expect(await c.call('SETEX n 30 4')).toBe('OK');
    expect(await c.call('INC n')).toBe('VALUE 5');
    expect(await c.call('TTL n')).toBe('TTL 30');
    expect(await c.call('APPEND n 0')).toBe('VALUE 50');
    expect(await c.call('TTL n')).toBe('TTL 30');
    // A TTL already over deletes the key.
    expect(await c.call('EXPIRE n 0')).toBe('OK');
    expect(await c.call('GET n')).toBe('NOT_FOUND');
    expect(await c.call('EXPIRE n -1')).toBe('NOT_FOUND');
  });

  it('refuses malformed TTLs', async () => {
    const [, c] = await node();
    expect(await c.call('SETEX k 0 v')).toBe("ERROR invalid expire time in 'setex' command");
    expect(await c.call('SETEX k -5 v')).toBe("ERROR invalid expire time in 'setex' command");
    expect(await c.call('SETEX k 1.5 v')).toBe('ERROR value is not an integer or out of range');
    expect(await c.call('SETEX k 99999999999 v')).toBe("ERROR invalid expire time in 'setex' command");
    expect(await c.call('SETEX k 10')).toMatch(/^ERROR SETEX command requires/);
    expect(await c.call('EXPIRE k')).toMatch(/^ERROR EXPIRE command requires/);
    expect(await c.call('EXPIRE k ten')).toBe('ERROR value is not an integer or out of range');
    expect(await c.call('TTL')).toMatch(/^ERROR TTL command requires/);
    expect(await c.call('PERSIST a b')).toMatch(/^ERROR PERSIST command requires/);
  });

  it('an expired key reads as absent everywhere at once, leaves DBSIZE, and is purged like a tombstone', async () => {
    const [n, c] = await node();
    expect(await c.call('SETEX gone 1 v')).toBe('OK');
    expect(await c.call('INC count')).toBe('VALUE 1');
    expect(await c.call('EXPIRE count 1')).toBe('OK');
    expect(await c.call('SET stays v')).toBe('OK');
    expect(await c.call('DBSIZE')).toBe('DBSIZE 3');
    expect(await c.stats()).toContain('expiring_keys:2');
    const rootBefore = n.store.rootHash().toString('hex');
    await sleep(1100);
    for (const k of ['gone', 'count']) {
      expect(await c.call(`GET ${k}`)).toBe('NOT_FOUND');
      expect(await c.call(`TTL ${k}`)).toBe('NOT_FOUND');
      expect(await c.call(`EXPIRE ${k} 10`)).toBe('NOT_FOUND');
    }
    expect(await c.call('EXISTS gone count stays')).toBe('EXISTS 1');
    expect(await c.call('DBSIZE')).toBe('DBSIZE 1');
    expect(await c.call('SCAN')).toBe('KEYS 1');
    expect(await c.lines(1)).toEqual(['stays']);
    expect(n.store.tombstoneCount).toBe(2);
    expect(await c.stats()).toContain('expiring_keys:0');
    // Nothing was written at expiry: the tree is what it was, the same on every replica.
    expect(n.store.rootHash().toString('hex')).toBe(rootBefore);
    // A counter made on an expired key starts again from zero.
    expect(await c.call('INC count')).toBe('VALUE 1');
    const expired = stateOf(Buffer.from(n.store.read(Buffer.from('gone')).value as Buffer));
    // The grace period is a day: purge as if it had passed.
    expect(await n.store.purgeTombstones(Date.now() + 1)).toBe(1);
    expect(n.store.read(Buffer.from('gone')).value).toBeUndefined();
    // A peer that has not purged it yet offers it back: refused, it may be an expiry forgotten here.
    expect(n.store.applyRemote(Buffer.from('gone'), expired)).toBeUndefined();
    expect(n.store.refusedPurged).toBe(1);
    expect(n.store.tombstoneCount).toBe(0);
    expect(await c.call('DBSIZE')).toBe('DBSIZE 2');
  });
});

describe('sets', () => {
  it('answer SADD, SREM, SMEMBERS, SISMEMBER and SCARD as DESIGN section 2 says', async () => {
    const [, c] = await node();
    expect(await c.call('SADD tags red green red blue')).toBe('SADD 3');
    expect(await c.call('SADD tags green')).toBe('SADD 0');
    expect(await c.members('tags')).toBe('MEMBERS 3\nblue\ngreen\nred');
    expect(await c.call('SISMEMBER tags red')).toBe('1');
    expect(await c.call('SISMEMBER tags pink')).toBe('0');
    expect(await c.call('SCARD tags')).toBe('SCARD 3');
    expect(await c.call('SREM tags red pink')).toBe('SREM 1');
    expect(await c.members('tags')).toBe('MEMBERS 2\nblue\ngreen');
    // A missing key is an empty set.
    expect(await c.members('none')).toBe('MEMBERS 0');
    expect(await c.call('SCARD none')).toBe('SCARD 0');
    expect(await c.call('SISMEMBER none x')).toBe('0');
    expect(await c.call('SREM none x')).toBe('SREM 0');
  });

  it('refuse the wrong kind both ways, and members that break the key rules', async () => {
    const [, c] = await node({ 'storage.max_key_bytes': '16' });
    const wrong = 'ERROR WRONGTYPE Operation against a key holding the wrong kind of value';
    await c.call('SET s v');
    await c.call('INC n');
    await c.call('SADD tags a');
    for (const line of ['SADD s x', 'SREM s x', 'SMEMBERS s', 'SISMEMBER s x', 'SCARD s', 'SADD n x', 'GET tags', 'APPEND tags x', 'INC tags']) {
      expect(await c.call(line), line).toBe(wrong);
    }
    expect(await c.call('MGET tags s')).toBe('VALUES 1');
    expect(await c.lines(2)).toEqual(['tags NOT_FOUND', 's v']);
    expect(await c.call('SADD tags')).toMatch(/^ERROR SADD command requires a key and at least one member/);
    expect(await c.call('SCARD tags x')).toMatch(/^ERROR SCARD command requires exactly one key/);
    expect(await c.call(`SADD tags ${'m'.repeat(17)}`)).toMatch(/^ERROR member: key too long/);
    expect(await c.call('SADD tags a\u0001b')).toMatch(/^ERROR member: invalid key/);
    // SET and DEL replace a set whatever it holds.
    expect(await c.call('SET tags plain')).toBe('OK');
    expect(await c.call('GET tags')).toBe('VALUE plain');
    expect(await c.call('SADD s2 a b')).toBe('SADD 2');
    expect(await c.call('DEL s2')).toBe('DELETED');
    expect(await c.members('s2')).toBe('MEMBERS 0');
    expect(await c.call('SADD s2 c')).toBe('SADD 1');
    expect(await c.members('s2')).toBe('MEMBERS 1\nc');
  });

  it('are keys to EXISTS, SCAN, DBSIZE and TTL while they have members, and absent once emptied', async () => {
    const [n, c] = await node();
    await c.call('SADD tags a b');
    await c.call('SET k v');
    expect(await c.call('EXISTS tags k')).toBe('EXISTS 2');
    expect(await c.call('DBSIZE')).toBe('DBSIZE 2');
    expect(await c.call('SCAN')).toBe('KEYS 2');
    expect(await c.lines(2)).toEqual(['k', 'tags']);
    expect(await c.call('EXPIRE tags 100')).toBe('OK');
    expect(await c.call('TTL tags')).toBe('TTL 100');
    expect(await c.call('SREM tags a b')).toBe('SREM 2');
    expect(await c.call('EXISTS tags')).toBe('EXISTS 0');
    expect(await c.call('DBSIZE')).toBe('DBSIZE 1');
    expect(await c.call('SCAN')).toBe('KEYS 1');
    expect(await c.lines(1)).toEqual(['k']);
    expect(await c.call('TTL tags')).toBe('NOT_FOUND');
    // Made again, it is a new set: the emptied one's TTL went with it, as in Redis.
    expect(await c.call('SADD tags z')).toBe('SADD 1');
    expect(await c.call('TTL tags')).toBe('TTL -1');
    expect(await c.call('DBSIZE')).toBe('DBSIZE 2');
    expect(n.store.tombstoneCount).toBe(0);
  });

  it('expire with their members, and old members are swept from LMDB and the tree after DEL', async () => {
    const [n, c] = await node();
    await c.call('SADD s a b c');
    await c.call('SADD t x');
    await c.call('DEL t');
    await n.store.settled();
    // DEL leaves t's tombstone; its member record is gone.
    const records = n.store.ranges.recordsUnder(0, 0).map((e) => e.key.toString('latin1'));
    expect(records.filter((k) => k.startsWith('\0'))).toHaveLength(3);
    expect(records).toContain('t');
    expect(await c.call('EXPIRE s 1')).toBe('OK');
    await sleep(1100);
    expect(await c.members('s')).toBe('MEMBERS 0');
    expect(await c.call('SISMEMBER s a')).toBe('0');
    expect(await c.call('EXISTS s')).toBe('EXISTS 0');
    // A set made after the expiry starts empty, in a new epoch.
    expect(await c.call('SADD s d')).toBe('SADD 1');
    expect(await c.members('s')).toBe('MEMBERS 1\nd');
    await n.store.settled();
    expect(n.store.ranges.recordsUnder(0, 0).filter((e) => e.key[0] === 0)).toHaveLength(1);
  });

  it('keep their members and counts across a restart (log replay and LMDB)', async () => {
    const dir = tempDir();
    const [n1, c1] = await node({ 'storage.path': dir, node_id: 'n1' });
    await c1.call('SADD big ' + Array.from({ length: 50 }, (_, i) => `m${i}`).join(' '));
    await c1.call('SREM big m0 m1');
    await c1.call('SADD empty x');
    await c1.call('SREM empty x');
    const root = n1.store.rootHash().toString('hex');
    await n1.stop();
    const [n2, c2] = await node({ 'storage.path': dir, node_id: 'n1' });
    expect(n2.store.rootHash().toString('hex')).toBe(root);
    expect(await c2.call('SCARD big')).toBe('SCARD 48');
    expect(await c2.call('DBSIZE')).toBe('DBSIZE 1');
    expect(await c2.call('EXISTS empty')).toBe('EXISTS 0');
    expect((await c2.members('big')).split('\n')).toHaveLength(49);
  });
});
