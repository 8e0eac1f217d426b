import { describe, expect, it } from 'vitest';
import { REFERENCE_GROUPS } from '../../src/commands/stats.js';
import { COMMAND_NAMES } from '../../src/commands/index.js';
import { LineClient, startTestNode } from '../helpers.js';
import { startCluster, valueOn, waitFor } from '../replication/cluster.js';

/** `name:value` lines of STATS or INFO as a record. */
function fields(lines: string[]): Record<string, string> {
  return Object.fromEntries(lines.slice(1).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1)]));
}

/** The MerkleKV reference project's monitoring and admin commands (issue #11, DESIGN.md section 2). */
describe("the reference project's commands", () => {
  it("STATS counts commands under the reference's names beside ours", async () => {
    const node = await startTestNode();
    const c = await LineClient.connect(node.address.port);
    const before = fields(await c.stats());
    for (const line of ['SET a 1', 'SET b 2', 'GET a', 'GET a', 'GET zz', 'DELETE a', 'DEL b', 'INC n', 'DEC n', 'APPEND s x', 'MGET a b', 'SCAN', 'PING', 'VERSION', 'NOSUCH x']) {
      await c.call(line);
    }
    const after = fields(await c.stats());
    const moved = (name: string): number => Number(after[name]) - Number(before[name]);
    expect(moved('get_commands')).toBe(3);
    expect(moved('set_commands')).toBe(2);
    expect(moved('delete_commands')).toBe(2);
    expect(moved('numeric_commands')).toBe(2);
    expect(moved('string_commands')).toBe(1);
    expect(moved('bulk_commands')).toBe(1);
    expect(moved('scan_commands')).toBe(1);
    expect(moved('management_commands')).toBe(1);
    // The STATS that took `before`, then PING; the unknown command counts in the total only.
    expect(moved('stat_commands')).toBe(2);
    expect(moved('total_commands')).toBe(16);
    expect(after.total_commands).toBe(after.commands_total);
    expect(after.active_connections).toBe('1');
    expect(Number(after.total_connections)).toBeGreaterThanOrEqual(1);
    expect(after.uptime).toMatch(/^\d+d \d+h \d+m \d+s$/);
    expect(Number(after.used_memory_kb)).toBeGreaterThan(1000);
    // Ours are still there.
    expect(after).toMatchObject({ node_id: 'test-node', get_hits: '2', get_misses: '3' });
  });

  it('every command a reference counter names is one of ours', () => {
    for (const [, commands] of REFERENCE_GROUPS) for (const name of commands) expect(COMMAND_NAMES).toContain(name);
  });

  it("INFO answers the reference's layout", async () => {
    const node = await startTestNode();
    const c = await LineClient.connect(node.address.port);
    await c.call('MSET a 1 b 2 c 3');
    await c.call('DEL c');
    const lines = await c.stats('INFO');
    expect(lines[0]).toBe('INFO');
    const info = fields(lines);
    expect(Object.keys(info).slice(0, 5)).toEqual(['version', 'uptime_seconds', 'uptime', 'server_time_unix', 'db_keys']);
    expect(info.db_keys).toBe('2');
    expect(Math.abs(Number(info.server_time_unix) - Date.now() / 1000)).toBeLessThan(5);
    expect(info.version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('MEMORY answers the resident set size in bytes', async () => {
    const node = await startTestNode();
    const c = await LineClient.connect(node.address.port);
    const reply = await c.call('MEMORY');
    expect(reply).toMatch(/^MEMORY \d+$/);
    expect(Number(reply.split(' ')[1])).toBeGreaterThan(1_000_000);
    expect(await c.call('MEMORY USAGE k')).toBe('ERROR MEMORY command requires no arguments');
  });

  it('CLIENT LIST shows one line per connection, then END', async () => {
    const node = await startTestNode();
    const a = await LineClient.connect(node.address.port);
    const b = await LineClient.connect(node.address.port);
    await b.call('GET k');
    // The block ends in END (LineClient.stats reads up to it).
    const ours = await a.stats('CLIENT LIST');
    expect(ours).toHaveLength(2);
    for (const row of ours) expect(row).toMatch(/^id=\d+ addr=127\.0\.0\.1:\d+ age=\d+ idle=\d+ cmd=[a-z.]+$/);
    expect(ours.some((r) => r.endsWith('cmd=client'))).toBe(true);
    expect(ours.some((r) => r.endsWith('cmd=get'))).toBe(true);
    expect(await a.call('CLIENT KILL x')).toBe('ERROR CLIENT command requires LIST');
  });

  it('CLIENT LIST and REPLICATE are admin commands', async () => {
    const node = await startTestNode({ 'security.admin_commands': 'false' });
    const c = await LineClient.connect(node.address.port);
    expect(await c.call('CLIENT LIST')).toMatch(/^ERROR CLIENT is disabled/);
    expect(await c.call('REPLICATE status')).toMatch(/^ERROR REPLICATE is disabled/);
    expect(await c.call('MEMORY')).toMatch(/^MEMORY \d+$/);
  });

  it('HASH <prefix> digests the content under the prefix, equal on replicas whatever their versions', async () => {
    const a = await startTestNode({ node_id: 'node-a' });
    const b = await startTestNode({ node_id: 'node-b' });
    const ca = await LineClient.connect(a.address.port);
    const cb = await LineClient.connect(b.address.port);
    await ca.call('MSET user:1 alice user:2 bob misc:x 1');
    await cb.call('SET user:2 robert');
    await cb.call('MSET user:1 alice user:2 bob misc:x 2 user:3 carol');
    await cb.call('DEL user:3');
    const hashA = await ca.call('HASH user:');
    expect(hashA).toMatch(/^HASH user: [0-9a-f]{64}$/);
    // Same content under user:, different histories (and a tombstone on b): the same digest.
    expect(await cb.call('HASH user:')).toBe(hashA);
    expect(await cb.call('HASH misc:')).not.toBe(await ca.call('HASH misc:'));
    // The Merkle root covers versions and tombstones: it differs.
    expect(await cb.call('HASH')).not.toBe(await ca.call('HASH'));
    expect(await ca.call('HASH')).toMatch(/^HASH [0-9a-f]{32}$/);
    // Any change of a value under the prefix changes it; sets and counters count by what they show.
    await ca.call('SET user:2 robert');
    expect(await ca.call('HASH user:')).not.toBe(hashA);
    await ca.call('SADD user:s m1 m2');
    await cb.call('SADD user:s m2 m1 m3');
    await cb.call('SREM user:s m3');
    await cb.call('SET user:2 robert');
    expect(await cb.call('HASH user:')).toBe(await ca.call('HASH user:'));
    expect(await ca.call('HASH nothing:')).toBe(`HASH nothing: ${'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'}`);
  });

  it('SYNC --verify answers OK when the roots match afterwards; --full walks the whole tree', async () => {
    const a = await startTestNode({ node_id: 'node-a' });
    const b = await startTestNode({ node_id: 'node-b' });
    const ca = await LineClient.connect(a.address.port);
    const cb = await LineClient.connect(b.address.port);
    await ca.call('MSET r:1 one r:2 two');
    await cb.call('SET only:b x');
    expect(await ca.call(`SYNC 127.0.0.1 ${b.address.port} --verify`)).toBe('OK');
    expect(await ca.call('GET only:b')).toBe('VALUE x');
    expect(await cb.call('GET r:2')).toBe('VALUE two');
    expect(await ca.call('HASH')).toBe(await cb.call('HASH'));
    const syncsBefore = fields(await ca.stats()).anti_entropy_syncs;
    expect(await ca.call(`SYNC 127.0.0.1 ${b.address.port} --full --verify`)).toBe('OK');
    expect(fields(await ca.stats()).anti_entropy_syncs).toBe(String(Number(syncsBefore) + 1));
    expect(await ca.call(`SYNC 127.0.0.1 ${b.address.port} --fast`)).toBe('ERROR SYNC command requires a host and a port (then --full, --verify)');
  });

  it('REPLICATE disable stops publishing and applying; enable resumes both', async () => {
    const [m1, m2] = await startCluster(2);
    if (m1 === undefined || m2 === undefined) throw new Error('no cluster');
    const c1 = await LineClient.connect(m1.node.address.port);
    const c2 = await LineClient.connect(m2.node.address.port);
    expect(await c1.call('REPLICATE status')).toBe('REPLICATION enabled');
    expect(await c1.call('REPLICATE disable')).toBe('OK');
    expect(await c1.call('REPLICATE status')).toBe('REPLICATION disabled');
    expect(await c1.call('SET quiet 1')).toBe('OK');
    expect(await c2.call('SET loud 2')).toBe('OK');
    await new Promise((r) => setTimeout(r, 500));
    expect(valueOn(m2, 'quiet')).toBeUndefined();
    expect(valueOn(m1, 'loud')).toBeUndefined();
    expect(fields(await c1.stats()).replication_unpublished).toBe('1');
    expect(await c1.call('REPLICATE enable')).toBe('OK');
    expect(await c1.call('REPLICATE status')).toBe('REPLICATION enabled');
    await waitFor('subscribed again', async () => fields(await c1.stats()).replication_subscribed === '1');
    expect(await c2.call('SET later 3')).toBe('OK');
    expect(await c1.call('SET again 4')).toBe('OK');
    await waitFor('both ways again', () => valueOn(m1, 'later') === '3' && valueOn(m2, 'again') === '4');
    expect(await c1.call('REPLICATE sideways')).toBe('ERROR REPLICATE command requires enable, disable or status');
  });

  it('REPLICATE on a node without replication says so', async () => {
    const node = await startTestNode();
    const c = await LineClient.connect(node.address.port);
    expect(await c.call('REPLICATE status')).toBe('REPLICATION disabled (not configured: [mqtt] enabled = false)');
    expect(await c.call('REPLICATE enable')).toBe('ERROR replication is not configured on this node ([mqtt] enabled = false)');
    expect(await c.call('REPLICATE disable')).toBe('OK');
  });
});
