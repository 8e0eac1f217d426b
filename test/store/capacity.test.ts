import { cpSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { Capacity, Store } from '../../src/store/index.js';
import { LineClient, silent, startTestNode, tempDir } from '../helpers.js';
import { mc } from '../memcached/socket.js';

const MIB = 1024 * 1024;
const VALUE = 'v'.repeat(1000);

async function storageStats(c: LineClient): Promise<Record<string, string>> {
  return Object.fromEntries((await c.stats('STATS storage')).slice(1).map((l) => l.split(':') as [string, string]));
}

describe('[storage] memory_limit_mb', () => {
  it('refuses client writes past the limit under concurrent writers, keeps every acknowledged one, and takes deletes and smaller values', async () => {
    const node = await startTestNode({ 'storage.memory_limit_mb': '1', 'memcached.enabled': 'true', 'memcached.port': '0' });
    const clients = await Promise.all([0, 1, 2, 3].map(() => LineClient.connect(node.address.port)));
    const acked: string[] = [];
    let refused = 0;
    await Promise.all(
      clients.map(async (c, w) => {
        // 4 x 400 values of 1 kB: about 1.6 MiB asked for, 1 MiB allowed.
        for (let batch = 0; batch < 20; batch++) {
          const keys = Array.from({ length: 20 }, (_, i) => `w${w}:${batch * 20 + i}`);
          c.send(keys.map((k) => `SET ${k} ${VALUE}\r\n`).join(''));
          const replies = await c.lines(keys.length);
          replies.forEach((r, i) => {
            if (r === 'OK') acked.push(keys[i] as string);
            else {
              expect(r).toMatch(/^ERROR Storage full: \d+ of 1048576 bytes used \(storage\.memory_limit_mb\)/);
              refused++;
            }
          });
        }
      }),
    );
    expect(acked.length).toBeGreaterThan(900);
    expect(refused).toBeGreaterThan(400);
    const c = clients[0] as LineClient;
    for (const k of acked) expect(await c.call(`GET ${k}`), k).toBe(`VALUE ${VALUE}`);
    let s = await storageStats(c);
    expect(Number(s.storage_data_bytes)).toBeLessThanOrEqual(MIB);
    expect([s.storage_memory_limit_bytes, s.storage_over_limit, s.storage_full_refusals]).toEqual([String(MIB), '0', String(refused)]);
    // Once LMDB holds them, one writer fills the rest, to within a record of the limit.
    await node.store.settled();
    for (let i = 0; i < 1000 && (await c.call(`SET more:${i} ${VALUE}`)) === 'OK'; i++) acked.push(`more:${i}`);
    await node.store.settled();
    s = await storageStats(c);
    expect(Number(s.storage_data_bytes)).toBeLessThanOrEqual(MIB);
    expect(Number(s.storage_data_bytes)).toBeGreaterThan(MIB - 1100);
    // Full: a new key is refused, a smaller value and a delete go through, and free room for new keys.
    expect(await c.call(`SET fresh ${VALUE}`)).toMatch(/^ERROR Storage full/);
    expect(await c.call(`SET ${acked[0]} small`)).toBe('OK');
    for (const k of acked.slice(1, 11)) expect(await c.call(`DEL ${k}`)).toBe('DELETED');
    expect(await c.call(`SET fresh ${VALUE}`)).toBe('OK');
    // Multi-key writes are refused whole.
    // (About 10 kB are free now: 30 pairs of 1 kB do not fit, and none of them is written.)
    const pairs = Array.from({ length: 30 }, (_, i) => `m${i + 1} ${VALUE}`).join(' ');
    expect(await c.call(`MSET ${pairs}`)).toMatch(/^ERROR Storage full/);
    expect(await c.call('EXISTS m1 m2 m3')).toBe('EXISTS 0');
    const members = Array.from({ length: 100 }, (_, i) => `member-${i}-${'x'.repeat(50)}`).join(' ');
    expect(await c.call(`SADD s ${members}`)).toMatch(/^ERROR Storage full/);
    expect(await c.call('SCARD s')).toBe('SCARD 0');
    // memcached's clients see memcached's out-of-memory reply.
    const m = await mc(node.memcachedAddress?.port as number);
    m.send(`${Array.from({ length: 15 }, (_, i) => `set big${i} 0 0 ${VALUE.length}\r\n${VALUE}\r\n`).join('')}stats\r\n`);
    const text = await m.until(/END\r\n/);
    const outOfMemory = text.match(/SERVER_ERROR out of memory storing object\r\n/g)?.length ?? 0;
    expect(outOfMemory).toBeGreaterThan(0);
    expect(text).toContain(`STAT store_no_memory ${outOfMemory}\r\n`);
    s = await storageStats(c);
    expect(Number(s.storage_data_bytes)).toBeLessThanOrEqual(MIB);
  }, 60_000);

  it('still applies what other nodes send past the limit, and says it is over it (STATS, /health, metrics)', async () => {
    const full = await startTestNode({ node_id: 'full' });
    const a = await LineClient.connect(full.address.port);
    for (let i = 0; i < 1500; i++) a.send(`SET k${i} ${VALUE}\r\n`);
    await a.lines(1500);
    const small = await startTestNode({ node_id: 'small', 'storage.memory_limit_mb': '1', 'metrics.enabled': 'true', 'metrics.port': '0' });
    const b = await LineClient.connect(small.address.port);
    // Anti-entropy brings another node's writes: never refused, or the replicas would differ for good.
    expect(await b.call(`SYNC 127.0.0.1 ${full.address.port} --verify`)).toBe('OK');
    expect(await b.call('DBSIZE')).toBe('DBSIZE 1500');
    const s = await storageStats(b);
    expect(s.storage_over_limit).toBe('1');
    expect(Number(s.storage_data_bytes)).toBeGreaterThan(1.4 * MIB);
    const base = `http://127.0.0.1:${small.metricsAddress?.port}`;
    const health = await fetch(`${base}/health`);
    expect(health.status).toBe(503);
    expect(((await health.json()) as { reasons: string[] }).reasons).toEqual(['storage over memory_limit_mb: client writes that grow the data are refused']);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/^merklekv_storage_over_limit 1$/m);
    expect(metrics).toMatch(/^merklekv_memory_limit_bytes 1048576$/m);
    expect(await b.call('SET another one')).toMatch(/^ERROR Storage full/);
    expect(await b.call('DEL k1')).toBe('DELETED');
  });

  it('counts the same bytes after a clean stop (snapshot) as after a crash (scan), sets and expiring keys included', async () => {
    const path = join(tempDir(), 'db');
    const open = (p: string): { store: Store; capacity: Capacity } => {
      const capacity = new Capacity(0);
      const store = Store.open({ path: p, nodeId: 'n', maxClockSkewMs: 60_000, tombstoneGraceSeconds: 86_400, logger: silent, capacity });
      onTestFinished(() => store.close());
      return { store, capacity };
    };
    const { store, capacity } = open(path);
    for (let i = 0; i < 200; i++) void store.set(Buffer.from(`key:${i}`), Buffer.from(VALUE.slice(0, i)));
    for (let i = 0; i < 20; i++) void store.delete(Buffer.from(`key:${i}`));
    const { addMembers, setWithExpiry } = await import('../../src/store/index.js');
    addMembers(store, Buffer.from('set'), [Buffer.from('a'), Buffer.from('b')]);
    void setWithExpiry(store, Buffer.from('later'), Buffer.from('x'), Date.now() + 3_600_000);
    await store.settled();
    const running = capacity.usedBytes;
    // A copy while it runs is what a crash leaves: its start-up scans. (LMDB holds every write by now;
    // the log's segments, being deleted meanwhile, are left out.)
    const crashed = join(tempDir(), 'crashed');
    cpSync(path, crashed, { recursive: true, filter: (from) => !basename(from).startsWith('wal-') });
    await store.close();
    expect(running).toBeGreaterThan(18_000);
    expect(open(path).capacity.usedBytes).toBe(running);
    expect(open(crashed).capacity.usedBytes).toBe(running);
  });
});
