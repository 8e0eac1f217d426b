import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LineClient, tempDir } from './helpers.js';
import { runCli, spawnNode } from './process.js';

function configFile(text: string): string {
  const path = join(tempDir(), 'node.toml');
  writeFileSync(path, text);
  return path;
}

describe('merkle-kv command line', () => {
  it('prints help and version', async () => {
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--config <file>/);
    expect(help.stdout).toMatch(/--port <port>/);
    expect(help.stdout).toMatch(/--data-dir <path>/);
    const version = await runCli(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it.each([
    ['an unknown key', 'node_id = "a"\n[network]\nbind_prot = 1\n', /node\.toml: unknown key 'network\.bind_prot'/],
    ['a port out of range', 'node_id = "a"\n[network]\nbind_port = 99999\n', /network\.bind_port must be in 0\.\.65535/],
    ['a wrong type', 'node_id = "a"\n[mqtt]\nenabled = "yes"\n', /mqtt\.enabled must be true or false/],
    ['a syntax error', 'node_id = \n', /TOML syntax error at line 1/],
  ])('stops with exit code 2 and one line on %s', async (_name, text, message) => {
    const r = await runCli(['--config', configFile(text)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('stops with exit code 2 on a bad flag or environment value', async () => {
    expect((await runCli(['--node-id', 'a', '--port', 'x'])).code).toBe(2);
    expect((await runCli(['--bogus'])).code).toBe(2);
    const env = await runCli(['--node-id', 'a'], { MERKLE_KV_NETWORK_MAX_CONNECTIONS: '0' });
    expect(env.code).toBe(2);
    expect(env.stderr).toMatch(/MERKLE_KV_NETWORK_MAX_CONNECTIONS \(network\.max_connections\) must be in 1\.\./);
    const missing = await runCli([]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/node_id is required/);
  });

  it('applies file < environment < flags', async () => {
    const dir = tempDir();
    const file = configFile(`node_id = "from-file"\n[storage]\npath = "${join(dir, 'db')}"\n`);
    const nodeIdOf = async (args: string[], env: Record<string, string>): Promise<string> => {
      const node = await spawnNode(['--config', file, ...args], { env });
      const c = await LineClient.connect(node.port);
      const lines = await c.stats('INFO');
      node.child.kill('SIGTERM');
      expect(await node.exited).toBe(0);
      return (lines.find((l) => l.startsWith('node_id:')) ?? '').replace('node_id:', '');
    };
    expect(await nodeIdOf([], {})).toBe('from-file');
    expect(await nodeIdOf([], { MERKLE_KV_NODE_ID: 'from-env' })).toBe('from-env');
    expect(await nodeIdOf(['--node-id', 'from-flag'], { MERKLE_KV_NODE_ID: 'from-env' })).toBe('from-flag');
  });
});

describe('node process', () => {
  it('stops cleanly on SIGTERM and SIGINT, keeping its data', async () => {
    const dir = join(tempDir(), 'db');
    const first = await spawnNode(['--node-id', 'n', '--data-dir', dir]);
    const c = await LineClient.connect(first.port);
    expect(await c.call('SET k v')).toBe('OK');
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    expect(first.stderr()).toMatch(/"node stopped"/);
    const second = await spawnNode(['--node-id', 'n', '--data-dir', dir]);
    const d = await LineClient.connect(second.port);
    expect(await d.call('GET k')).toBe('VALUE v');
    second.child.kill('SIGINT');
    expect(await second.exited).toBe(0);
  });

  it('logs one text line per event, the last one included, with format = text', async () => {
    const node = await spawnNode(['--node-id', 'n', '--data-dir', join(tempDir(), 'db'), '--log-format', 'text']);
    node.child.kill('SIGTERM');
    expect(await node.exited).toBe(0);
    const lines = node.stderr().trim().split('\n');
    expect(lines[0]).toMatch(/^\[[\d:.]+\] INFO: node listening \{.*"node":"n"/);
    expect(lines[lines.length - 1]).toMatch(/INFO: node stopped/);
  });

  it('loses no acknowledged write when killed with SIGKILL', async () => {
    const dir = join(tempDir(), 'db');
    const node = await spawnNode(['--node-id', 'n', '--data-dir', dir]);
    const acked = new Set<string>();
    const clients = await Promise.all([1, 2, 3, 4].map(() => LineClient.connect(node.port)));
    // Pipelined writers; the kill lands while many writes are in flight.
    const writers = clients.map(async (c, w) => {
      for (let round = 0; round < 1000; round++) {
        const keys = Array.from({ length: 16 }, (_, i) => `w${w}:${round}:${i}`);
        c.send(keys.map((k) => `SET ${k} ${k}\r\n`).join(''));
        try {
          const replies = await c.lines(16, 2000);
          keys.forEach((k, i) => replies[i] === 'OK' && acked.add(k));
        } catch {
          return;
        }
      }
    });
    setTimeout(() => node.child.kill('SIGKILL'), 300);
    await Promise.all(writers);
    expect(await node.exited).toBe('SIGKILL');
    expect(acked.size).toBeGreaterThan(100);
    const again = await spawnNode(['--node-id', 'n', '--data-dir', dir]);
    const c = await LineClient.connect(again.port);
    const missing: string[] = [];
    for (const key of acked) if ((await c.call(`GET ${key}`)) !== `VALUE ${key}`) missing.push(key);
    expect(missing).toEqual([]);
  });

  it('keeps serving when nobody reads its stderr pipe', async () => {
    const node = await spawnNode(['--node-id', 'n', '--data-dir', join(tempDir(), 'db'), '--log-level', 'debug'], {
      stopReadingStderr: true,
    });
    // Each connection logs two debug lines: far more than a pipe buffer (64 KiB) holds.
    for (let i = 0; i < 1500; i++) {
      const c = await LineClient.connect(node.port);
      c.socket.destroy();
    }
    const c = await LineClient.connect(node.port);
    expect(await c.call('PING')).toBe('PONG');
    node.child.kill('SIGTERM');
    expect(await node.exited).toBe(0);
  });
});
