import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { Backups } from '../../src/backups.js';
import { LineClient, silent, startTestNode, tempDir } from '../helpers.js';
import { spawnNode } from '../process.js';
import { rootFromScratch } from './scratch.js';

const round = (value: string): number => Number(value.split(':')[1]);

describe('BACKUP', () => {
  it('copies a running node while four clients write: a node started on it holds every write acknowledged before, and catches up by SYNC', async () => {
    const dir = join(tempDir(), 'db');
    const backup = join(tempDir(), 'backups', 'first');
    const node = await spawnNode(['--node-id', 'n', '--data-dir', dir]);
    // Per key, the newest round acknowledged and the newest round sent.
    const acked = new Map<string, number>();
    const sent = new Map<string, number>();
    let stop = false;
    let next = 0;
    const clients = await Promise.all([0, 1, 2, 3].map(() => LineClient.connect(node.port)));
    const writers = clients.map(async (c, w) => {
      for (let i = 0; i < 5000 && !stop; i++) {
        const r = ++next;
        const slots = Array.from({ length: 16 }, (_, s) => (r * 7 + s) % 60);
        for (const s of slots) sent.set(`w${w}:${s}`, r);
        c.send(slots.map((s) => `SET w${w}:${s} ${w}:${r}:${s}\r\n`).join(''));
        const replies = await c.lines(16, 5000);
        slots.forEach((s, i) => replies[i] === 'OK' && acked.set(`w${w}:${s}`, r));
      }
    });
    await new Promise((r) => setTimeout(r, 300));
    const admin = await LineClient.connect(node.port);
    // What was acknowledged before the backup began: all of it must be in the backup.
    const before = new Map(acked);
    expect(await admin.call(`BACKUP ${backup}`)).toBe(`OK ${backup}`);
    await new Promise((r) => setTimeout(r, 200));
    stop = true;
    await Promise.all(writers);
    expect(before.size).toBeGreaterThan(100);
    expect(await admin.stats('STATS storage')).toEqual(expect.arrayContaining(['storage_backups:1', 'storage_backup_failures:0', 'storage_backup_running:0']));
    expect(readdirSync(backup).sort()).toContain('data.mdb');

    const restored = await spawnNode(['--node-id', 'restored', '--data-dir', backup]);
    const c = await LineClient.connect(restored.port);
    const wrong: string[] = [];
    for (const [key, r] of before) {
      const reply = await c.call(`GET ${key}`);
      const got = reply.startsWith('VALUE ') ? round(reply.slice(6)) : -1;
      if (got < r || got > (sent.get(key) as number)) wrong.push(`${key}: acked ${r} before the backup, found ${reply}`);
    }
    expect(wrong).toEqual([]);
    // Its tree is the one its records make, however much of the writes after the start the copy holds.
    const hash = await c.call('HASH');
    restored.child.kill('SIGTERM');
    expect(await restored.exited).toBe(0);
    expect(hash).toBe(`HASH ${rootFromScratch(backup)}`);

    // Anti-entropy brings it up to date with the node it was taken from.
    const again = await spawnNode(['--node-id', 'restored', '--data-dir', backup]);
    const d = await LineClient.connect(again.port);
    expect(await d.call(`SYNC 127.0.0.1 ${node.port} --verify`)).toBe('OK');
    expect(await d.call('HASH')).toBe(await admin.call('HASH'));
    for (const [key, r] of acked) expect(round((await d.call(`GET ${key}`)).slice(6)), key).toBeGreaterThanOrEqual(r);
    node.child.kill('SIGTERM');
    again.child.kill('SIGTERM');
    expect(await node.exited).toBe(0);
  }, 90_000);

  it('refuses a directory that exists or lies in the data directory, and is an admin command', async () => {
    const node = await startTestNode();
    const c = await LineClient.connect(node.address.port);
    const taken = join(tempDir(), 'taken');
    mkdirSync(taken);
    expect(await c.call(`BACKUP ${taken}`)).toMatch(/^ERROR backup directory .* already exists$/);
    expect(await c.call(`BACKUP ${join(node.store.path, 'inside')}`)).toMatch(/^ERROR backup directory .* is inside the data directory$/);
    expect(await c.call('BACKUP a b')).toBe('ERROR BACKUP command requires at most a path');
    const locked = await startTestNode({ 'security.admin_commands': 'false' });
    const d = await LineClient.connect(locked.address.port);
    expect(await d.call(`BACKUP ${join(tempDir(), 'x')}`)).toMatch(/^ERROR BACKUP is disabled on this node/);
  });

  it('takes scheduled backups under backup_path by time and keeps the newest backup_keep', async () => {
    const node = await startTestNode();
    await node.store.set(Buffer.from('k'), Buffer.from('v'));
    const parent = join(tempDir(), 'scheduled');
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const backups = new Backups(node.store, { path: parent, keep: 2, intervalHours: 1 }, silent);
    try {
      backups.start();
      for (let i = 1; i <= 3; i++) {
        vi.advanceTimersByTime(3_600_000);
        await vi.waitFor(() => expect(backups.figures()).toMatchObject({ taken: i, running: false }), { timeout: 10_000, interval: 20 });
        // Names by the time they began: one a millisecond apart at least.
        await new Promise((r) => setTimeout(r, 5));
      }
    } finally {
      await backups.close();
      vi.useRealTimers();
    }
    const kept = readdirSync(parent).sort();
    expect(kept).toHaveLength(2);
    expect(join(parent, kept[1] as string)).toBe(backups.figures().lastDir);
    for (const name of kept) expect(existsSync(join(parent, name, 'backup.json'))).toBe(true);
  });
});
