import { spawn } from 'node:child_process';
import { cpSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { DirectoryInUseError } from '../../src/errors.js';
import { lockDataDirectory } from '../../src/store/lock.js';
import { LineClient, tempDir } from '../helpers.js';
import { procStat, runCli, spawnNode } from '../process.js';

const lockOf = (dir: string): string => join(dir, 'merkle-kv.lock');

describe('the data directory lock', () => {
  it('refuses a second holder in this process until the first releases it', () => {
    const dir = join(tempDir(), 'db');
    const release = lockDataDirectory(dir);
    expect(() => lockDataDirectory(dir)).toThrow(DirectoryInUseError);
    expect(() => lockDataDirectory(dir)).toThrow(/in use by another running node \(this process\)/);
    release();
    lockDataDirectory(dir)();
  });

  it('takes over a lock whose owner is gone, a copied directory, and a damaged lock file', () => {
    const dir = join(tempDir(), 'db');
    const release = lockDataDirectory(dir);
    const owner = JSON.parse(readFileSync(lockOf(dir), 'utf8')) as { pid: number; started: string; dir: string };
    // A copy (a backup restored elsewhere) names the original directory: it is not locked.
    const copy = join(tempDir(), 'copy');
    cpSync(dir, copy, { recursive: true });
    lockDataDirectory(copy)();
    release();
    // An owner that is no longer running (pid 2^22 - 1 is above Linux's default pid_max).
    writeFileSync(lockOf(dir), JSON.stringify({ ...owner, pid: 4_194_303 }));
    lockDataDirectory(dir)();
    // This pid, but a process started at another time: the pid was reused.
    writeFileSync(lockOf(dir), JSON.stringify({ ...owner, pid: process.pid, started: '1' }));
    lockDataDirectory(dir)();
    writeFileSync(lockOf(dir), '{"pid": 1, "sta');
    lockDataDirectory(dir)();
  });

  it('refuses a lock held by another live process', async () => {
    const dir = join(tempDir(), 'db');
    lockDataDirectory(dir)();
    const other = spawn('sleep', ['30'], { stdio: 'ignore' });
    onTestFinished(() => {
      other.kill('SIGKILL');
    });
    await new Promise((r) => other.once('spawn', r));
    const pid = other.pid as number;
    writeFileSync(lockOf(dir), JSON.stringify({ pid, started: procStat(pid)[19], dir: realpathSync(dir) }));
    expect(() => lockDataDirectory(dir)).toThrow(new RegExp(`in use by another running node \\(pid ${pid}\\)`));
  });

  it('takes over a lock whose owner was killed but not yet reaped (a zombie)', async () => {
    const dir = join(tempDir(), 'db');
    lockDataDirectory(dir)();
    // `sleep 0.1` becomes a zombie: its parent execs into a `sleep 30` that never reaps it.
    const parent = spawn('sh', ['-c', 'sleep 0.1 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
    onTestFinished(() => {
      parent.kill('SIGKILL');
    });
    const pid = Number(await new Promise<string>((resolve) => parent.stdout.once('data', (b: Buffer) => resolve(b.toString()))));
    await new Promise((r) => setTimeout(r, 400));
    expect(procStat(pid)[0]).toBe('Z');
    writeFileSync(lockOf(dir), JSON.stringify({ pid, started: procStat(pid)[19], dir: realpathSync(dir) }));
    lockDataDirectory(dir)();
  });

  it('a second node on the same storage.path exits 2 saying why; after kill -9 of the first, a restart takes over at once', async () => {
    const dir = join(tempDir(), 'db');
    const env = { MERKLE_KV_MQTT_ENABLED: 'false', MERKLE_KV_ANTI_ENTROPY_ENABLED: 'false' };
    const first = await spawnNode(['--data-dir', dir, '--node-id', 'first'], { env });
    const second = await runCli(['--data-dir', dir, '--node-id', 'second', '--port', '0'], env);
    expect(second.code).toBe(2);
    expect(second.stderr).toMatch(new RegExp(`cannot start: data directory .* is in use by another running node \\(pid ${first.child.pid}\\)`));
    const client = await LineClient.connect(first.port);
    expect(await client.call('SET k v')).toBe('OK');
    first.child.kill('SIGKILL');
    await first.exited;
    const again = await spawnNode(['--data-dir', dir, '--node-id', 'first'], { env });
    const reader = await LineClient.connect(again.port);
    expect(await reader.call('GET k')).toBe('VALUE v');
  }, 30_000);
});
