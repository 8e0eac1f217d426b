import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { pino, type Logger } from 'pino';
import { describe, expect, it, onTestFinished } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { DirectoryInUseError, StorageError } from '../../src/errors.js';
import type { RunningNode } from '../../src/node.js';
import { cacheDirectory, freshCacheDirectory, Store } from '../../src/store/index.js';
import { LineClient, silent, startTestNode, tempDir } from '../helpers.js';
import { CLI } from '../process.js';
import { waitFor } from '../replication/cluster.js';

/*
 * A cache node (`[storage] persistence_enabled = false`, store/cache.ts): its data in a temporary
 * directory named after its node id, fresh at every start and removed at a clean stop, nothing synced,
 * refilled from its peers by anti-entropy after a restart.
 */

/** A node id no other test (or test file running beside this one) uses, its cache directory removed at the end. */
function uniqueId(name: string): string {
  const id = `${name}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  onTestFinished(() => rmSync(cacheDirectory(id), { recursive: true, force: true }));
  return id;
}

/** A logger that keeps every line it writes, parsed. */
function recording(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { logger, lines };
}

function startCacheNode(id: string, flags: Record<string, string> = {}, logger: Logger = silent): Promise<RunningNode> {
  return startTestNode({ node_id: id, 'storage.persistence_enabled': 'false', ...flags }, logger);
}

async function storageStats(node: RunningNode): Promise<string[]> {
  const c = await LineClient.connect(node.address.port);
  return c.stats('STATS storage');
}

describe('cache node directory', () => {
  it('is made fresh under the OS temp dir, named after the node id, wiping a crash leftover, and removed at stop', async () => {
    const id = uniqueId('cache');
    const dir = cacheDirectory(id);
    expect(dirname(dir)).toBe(tmpdir());
    expect(basename(dir)).toContain(id);
    // What a crashed cache node leaves: a database holding keys, and whatever else it wrote.
    const old = Store.open({ path: dir, nodeId: id, maxClockSkewMs: 60_000, tombstoneGraceSeconds: 86_400, logger: silent });
    await old.set(Buffer.from('stale-key'), Buffer.from('stale'));
    await old.close();
    writeFileSync(join(dir, 'stale-file'), 'left over');
    const configured = join(tempDir(), 'configured');
    const { logger, lines } = recording();
    const node = await startCacheNode(id, { 'storage.path': configured }, logger);
    expect(node.store.path).toBe(dir);
    expect(node.store.size).toBe(0);
    expect(existsSync(join(dir, 'stale-file'))).toBe(false);
    expect(existsSync(configured)).toBe(false);
    expect(lines.some((l) => l.level === 40 && /storage\.path is ignored/.test(String(l.msg)) && l.path === configured)).toBe(true);
    const c = await LineClient.connect(node.address.port);
    expect(await c.call('GET stale-key')).toBe('NOT_FOUND');
    expect(await c.call('SET k v')).toBe('OK');
    expect(readdirSync(dir)).toContain('data.mdb');
    await node.stop();
    expect(existsSync(dir)).toBe(false);
  });

  it('is not storage.path: the config leaves that unset for a cache node, so a path set on purpose shows', () => {
    expect(loadConfig({ flags: { node_id: 'n', 'storage.persistence_enabled': 'false' } }).storage.path).toBe('');
    expect(loadConfig({ flags: { node_id: 'n' } }).storage.path).toBe('./data/n');
    expect(loadConfig({ env: { MERKLE_KV_STORAGE_PERSISTENCE_ENABLED: 'off', MERKLE_KV_NODE_ID: 'n' } }).storage.persistence_enabled).toBe(false);
  });

  it('is refused, and left alone, while a running node with the same node id holds it', async () => {
    const id = uniqueId('twice');
    const first = await startCacheNode(id);
    void first.store.set(Buffer.from('k'), Buffer.from('v'));
    await expect(startCacheNode(id)).rejects.toThrow(DirectoryInUseError);
    expect(first.store.size).toBe(1);
    expect(existsSync(join(cacheDirectory(id), 'data.mdb'))).toBe(true);
  });

  it('names a directory of its own for any node id, and refuses a link planted at its name', () => {
    for (const id of ['a/b', '..', 'x'.repeat(255), 'ü/../../etc']) {
      const dir = cacheDirectory(id);
      expect(dirname(dir)).toBe(tmpdir());
      expect(Buffer.byteLength(basename(dir))).toBeLessThanOrEqual(255);
    }
    expect(cacheDirectory('x'.repeat(255))).not.toBe(cacheDirectory(`${'x'.repeat(254)}y`));
    const id = uniqueId('link');
    const target = tempDir();
    writeFileSync(join(target, 'precious'), 'keep me');
    symlinkSync(target, cacheDirectory(id));
    expect(() => freshCacheDirectory(id)).toThrow(StorageError);
    expect(readFileSync(join(target, 'precious'), 'utf8')).toBe('keep me');
    rmSync(cacheDirectory(id));
  });
});

describe('cache node', () => {
  it('says which mode runs, in STATS storage and in the start-up log', async () => {
    const { logger, lines } = recording();
    const cache = await startCacheNode(uniqueId('mode'), {}, logger);
    const disk = await startTestNode({ node_id: 'disk' });
    const cacheStats = await storageStats(cache);
    expect(cacheStats).toContain('storage_persistence:cache');
    expect(cacheStats).toContain('storage_fsync:none');
    const diskStats = await storageStats(disk);
    expect(diskStats).toContain('storage_persistence:disk');
    expect(diskStats).toContain('storage_fsync:periodic');
    const listening = lines.find((l) => l.msg === 'node listening');
    expect(listening).toMatchObject({ persistence: 'cache', path: cache.store.path });
  });

  it('loses no increment made after a restart, before the refill (its counter totals go under a new name)', async () => {
    const peer = await startTestNode({ node_id: 'peer', 'anti_entropy.enabled': 'false' });
    const id = uniqueId('counter');
    // No periodic exchange: the increments below come before any refill.
    const flags = { 'anti_entropy.enabled': 'false' };
    let cache = await startCacheNode(id, flags);
    const first = cache.store.counterWriter;
    expect(first).toMatch(new RegExp(`^${id}~[0-9a-f]{8}$`));
    let c = await LineClient.connect(cache.address.port);
    for (let i = 1; i <= 5; i++) expect(await c.call('INC hits')).toBe(`VALUE ${i}`);
    expect(await c.call(`SYNC 127.0.0.1 ${peer.address.port}`)).toBe('OK');
    await cache.stop();
    cache = await startCacheNode(id, flags);
    expect(cache.store.counterWriter).not.toBe(first);
    c = await LineClient.connect(cache.address.port);
    // It knows nothing of its earlier totals yet: its own count starts again, under its new name.
    expect(await c.call('INC hits')).toBe('VALUE 1');
    expect(await c.call(`SYNC 127.0.0.1 ${peer.address.port}`)).toBe('OK');
    expect(await c.call('GET hits')).toBe('VALUE 6');
    const p = await LineClient.connect(peer.address.port);
    expect(await p.call('GET hits')).toBe('VALUE 6');
  });

  it('comes back empty after a restart and refills from the peer in its peer_list', async () => {
    const peer = await startTestNode({ node_id: 'peer', 'anti_entropy.enabled': 'false' });
    for (let i = 0; i < 3000; i++) void peer.store.set(Buffer.from(`key:${i}`), Buffer.from(`value ${i}`));
    void peer.store.delete(Buffer.from('key:7'));
    await peer.store.settled();
    const id = uniqueId('refill');
    const flags = { 'anti_entropy.peer_list': `127.0.0.1:${peer.address.port}`, 'anti_entropy.interval_seconds': '1' };
    let cache = await startCacheNode(id, flags);
    await waitFor('the first refill', () => cache.store.rootHash().equals(peer.store.rootHash()));
    // A write acknowledged here survives the restart only because the peer holds it too.
    const c = await LineClient.connect(cache.address.port);
    expect(await c.call('SET written-here on the cache node')).toBe('OK');
    expect(await c.call(`SYNC 127.0.0.1 ${peer.address.port}`)).toBe('OK');
    expect(peer.store.size).toBe(3000);
    await cache.stop();
    cache = await startCacheNode(id, flags);
    // Anti-entropy's first round comes at least 500 ms after start: until then the node holds nothing.
    expect(cache.store.size).toBe(0);
    expect(cache.store.tombstoneCount).toBe(0);
    await waitFor('the refill after the restart', () => cache.store.rootHash().equals(peer.store.rootHash()), 8000);
    expect(cache.store.size).toBe(3000);
    const again = await LineClient.connect(cache.address.port);
    expect(await again.call('GET written-here')).toBe('VALUE on the cache node');
    expect(await again.call('GET key:7')).toBe('NOT_FOUND');
    expect(await again.call('GET key:2999')).toBe('VALUE value 2999');
  });
});

/** Whether strace can trace a child here (it may be missing, or ptrace refused in a container). */
const canTrace = spawnSync('strace', ['-f', '-o', '/dev/null', 'true']).status === 0;

/**
 * Runs a node process under strace, writes `n` keys, lets LMDB and the log's timer run, stops it with
 * SIGTERM and returns the sync calls (fsync, fdatasync, msync, ...) it made on files other than stdio.
 */
async function syncCallsOf(args: string[], env: Record<string, string>, n = 500): Promise<string[]> {
  const out = join(tempDir(), 'strace.txt');
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MERKLE_KV_')));
  const child = spawn('strace', ['-f', '-qq', '-o', out, '-e', 'trace=fsync,fdatasync,msync,sync_file_range,syncfs', process.execPath, CLI, '--port', '0', ...args], {
    env: { ...clean, MERKLE_KV_MQTT_ENABLED: 'false', MERKLE_KV_ANTI_ENTROPY_ENABLED: 'false', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  onTestFinished(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  let text = '';
  child.stderr.on('data', (b: Buffer) => (text += b.toString()));
  await waitFor('the node to listen', () => text.includes('"node listening"'), 10_000);
  const listening = JSON.parse(text.split('\n').find((l) => l.includes('"node listening"')) as string) as { port: number; path: string };
  // strace's child is the node: its pid is in the lock of its data directory.
  const { pid } = JSON.parse(readFileSync(join(listening.path, 'merkle-kv.lock'), 'utf8')) as { pid: number };
  const c = await LineClient.connect(listening.port);
  for (let i = 0; i < n; i += 50) {
    const pairs = Array.from({ length: 50 }, (_, k) => `key:${i + k} value-${i + k}`).join(' ');
    expect(await c.call(`MSET ${pairs}`)).toBe('OK');
  }
  // LMDB's batch comes within 200 ms, the log's periodic round every 100 ms.
  await new Promise((r) => setTimeout(r, 600));
  c.socket.destroy();
  process.kill(pid, 'SIGTERM');
  await exited;
  return readFileSync(out, 'utf8')
    .split('\n')
    .filter((line) => /^\d+ +(fsync|fdatasync|msync|sync_file_range|syncfs)\((\d+)/.exec(line) !== null && !/\((0|1|2)[,)]/.test(line));
}

describe.skipIf(!canTrace)('cache node durability', () => {
  it('syncs nothing to disk (no fsync, fdatasync or msync on its log or LMDB), where a node on disk does', async () => {
    const dataDir = join(tempDir(), 'disk');
    mkdirSync(dataDir);
    const disk = await syncCallsOf(['--node-id', 'traced-disk', '--data-dir', dataDir], {});
    expect(disk.length).toBeGreaterThan(0);
    const id = uniqueId('traced');
    const cache = await syncCallsOf(['--node-id', id], { MERKLE_KV_STORAGE_PERSISTENCE_ENABLED: 'false' });
    expect(cache).toEqual([]);
    expect(existsSync(cacheDirectory(id))).toBe(false);
  });
});
