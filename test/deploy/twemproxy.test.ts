import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { LineClient, tempDir } from '../helpers.js';
import { spawnNode, type NodeProcess } from '../process.js';
import { freePort } from '../replication/cluster.js';

const SHIPPED = fileURLToPath(new URL('../../configs/twemproxy/nutcracker.yml', import.meta.url));
/**
 * .ci/run installs nutcracker (Debian package nutcracker); with CI=true this test must run. Debian puts
 * it in /usr/sbin, which a user's PATH may lack.
 */
const NUTCRACKER = [spawnSync('sh', ['-c', 'command -v nutcracker'], { encoding: 'utf8' }).stdout.trim(), '/usr/sbin/nutcracker'].find(
  (path) => path !== '' && existsSync(path),
);
const KEYS = 1000;

/** One memcached reply: a one-line reply, or the items of a retrieval (`VALUE` blocks up to `END`). */
type Reply = string | Map<string, { flags: string; value: string }>;

/** A memcached text-protocol connection for pipelined requests; replies are framed by their lengths. */
class Memcached {
  private buffered = Buffer.alloc(0);
  private closed = false;
  private wake: () => void = () => {};

  private constructor(private readonly socket: Socket) {
    socket.on('data', (b: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, b]);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  static async connect(port: number): Promise<Memcached> {
    const socket = connect({ port, host: '127.0.0.1', noDelay: true });
    onTestFinished(() => {
      socket.destroy();
    });
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return new Memcached(socket);
  }

  send(text: string): void {
    this.socket.write(text);
  }

  /** Reads `n` replies, waiting at most `timeoutMs` for all of them. */
  async replies(n: number, timeoutMs = 5000): Promise<Reply[]> {
    const out: Reply[] = [];
    const deadline = Date.now() + timeoutMs;
    while (out.length < n) {
      const reply = this.frame();
      if (reply !== undefined) {
        out.push(reply);
        continue;
      }
      if (this.closed) throw new Error(`connection closed after ${out.length} of ${n} replies`);
      if (Date.now() > deadline) throw new Error(`timed out after ${out.length} of ${n} replies: ${this.buffered.toString('latin1', 0, 200)}`);
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 50);
      });
    }
    return out;
  }

  /** Takes one whole reply off the buffer, or undefined while it is incomplete. */
  private frame(): Reply | undefined {
    const buf = this.buffered;
    let at = 0;
    const items = new Map<string, { flags: string; value: string }>();
    for (;;) {
      const eol = buf.indexOf('\r\n', at);
      if (eol < 0) return undefined;
      const line = buf.toString('latin1', at, eol);
      const value = /^VALUE (\S+) (\d+) (\d+)(?: \d+)?$/.exec(line);
      if (value === null) {
        this.buffered = buf.subarray(eol + 2);
        if (line === 'END') return items;
        if (at > 0) throw new Error(`${line} inside a retrieval reply`);
        return line;
      }
      const start = eol + 2;
      const end = start + Number(value[3]);
      if (buf.length < end + 2) return undefined;
      items.set(value[1] as string, { flags: value[2] as string, value: buf.toString('latin1', start, end) });
      at = end + 2;
    }
  }
}

/** The port of a node's memcached listener, from its start-up log (logged before 'node listening'). */
function memcachedPort(node: NodeProcess): number {
  const line = node.stderr().split('\n').find((l) => l.includes('memcached listener listening'));
  const port = /"port":(\d+)/.exec(line ?? '')?.[1];
  if (port === undefined) throw new Error(`no memcached listener in: ${node.stderr()}`);
  return Number(port);
}

/**
 * The shipped configuration with its listen address and its two server addresses replaced, and
 * nothing else: weights, names and every other setting are the shipped ones.
 */
function derivedConfig(listen: number, servers: readonly number[]): string {
  const shipped = readFileSync(SHIPPED, 'utf8');
  const lines = [...shipped.matchAll(/^(\s*- )[^\s:]+:\d+:(\d+) (\S+)$/gm)];
  // Named servers (the name places a group on the ring), one per group.
  expect(new Set(lines.map((m) => m[3])).size).toBe(servers.length);
  let i = 0;
  const text = shipped
    .replace(/^(\s*listen: )\S+$/m, `$1127.0.0.1:${listen}`)
    .replace(/^(\s*- )[^\s:]+:\d+:(\d+) (\S+)$/gm, (_, indent: string, weight: string, name: string) => `${indent}127.0.0.1:${servers[i++]}:${weight} ${name}`);
  expect(text).toContain(`listen: 127.0.0.1:${listen}`);
  return text;
}

/** Starts nutcracker on a free port; a port taken meanwhile (it exits) is retried with another. */
async function startNutcracker(dir: string, servers: readonly number[]): Promise<{ port: number; log: () => string }> {
  for (let attempt = 1; ; attempt++) {
    const [port, stats] = [await freePort(), await freePort()];
    const file = join(dir, `nutcracker-${attempt}.yml`);
    writeFileSync(file, derivedConfig(port, servers));
    const logFile = join(dir, `nutcracker-${attempt}.log`);
    // -a/-s: the stats port on loopback (its default is 0.0.0.0:22222); -o/-p: no files outside `dir`.
    const args = ['-c', file, '-a', '127.0.0.1', '-s', String(stats), '-o', logFile, '-p', join(dir, `nutcracker-${attempt}.pid`)];
    const child: ChildProcess = spawn(NUTCRACKER as string, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    onTestFinished(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    const log = (): string => {
      let text = stderr;
      try {
        text += readFileSync(logFile, 'utf8');
      } catch {
        // Not written yet.
      }
      return text;
    };
    for (const deadline = Date.now() + 5000; Date.now() < deadline && child.exitCode === null; ) {
      const up = await new Promise<boolean>((resolve) => {
        const probe = connect({ port, host: '127.0.0.1' });
        probe.once('connect', () => {
          probe.destroy();
          resolve(true);
        });
        probe.once('error', () => resolve(false));
      });
      if (up) return { port, log };
      await new Promise((r) => setTimeout(r, 50));
    }
    if (child.exitCode === null) throw new Error(`nutcracker did not listen within 5 s: ${log()}`);
    if (attempt === 3) throw new Error(`nutcracker exited (${child.exitCode}): ${log()}`);
  }
}

/** Every key's item, read over one connection in pipelined `get` batches of `batch` keys. */
async function readAll(c: Memcached, keys: readonly string[], batch: number): Promise<Map<string, { flags: string; value: string }>> {
  const requests: string[][] = [];
  for (let i = 0; i < keys.length; i += batch) requests.push(keys.slice(i, i + batch));
  c.send(requests.map((ks) => `get ${ks.join(' ')}\r\n`).join(''));
  const items = new Map<string, { flags: string; value: string }>();
  for (const reply of await c.replies(requests.length)) {
    if (typeof reply === 'string') throw new Error(`get: ${reply}`);
    for (const [k, v] of reply) items.set(k, v);
  }
  return items;
}

describe('shards behind twemproxy (configs/twemproxy/nutcracker.yml)', () => {
  it('spreads keys over two shard groups by the shipped settings: each key in exactly one group', async (ctx) => {
    ctx.skip(NUTCRACKER === undefined && process.env.CI !== 'true', 'nutcracker is not installed (apt-get install nutcracker)');
    expect(NUTCRACKER, 'nutcracker installed (CI=true)').toBeDefined();
    const shipped = readFileSync(SHIPPED, 'utf8');
    for (const setting of [/^\s+distribution: ketama$/m, /^\s+hash: (md5|fnv1a_64)$/m, /^\s+redis: false$/m, /^\s+auto_eject_hosts: false$/m]) {
      expect(shipped).toMatch(setting);
    }
    const dir = tempDir();
    // Two single-node groups, each a cluster of its own: replication off (no broker), own data.
    const groups: NodeProcess[] = [];
    for (const name of ['a', 'b']) {
      const env = { MERKLE_KV_MEMCACHED_ENABLED: 'true', MERKLE_KV_MEMCACHED_PORT: '0', MERKLE_KV_MQTT_TOPIC_PREFIX: `group-${name}` };
      groups.push(await spawnNode(['--node-id', `group-${name}-1`, '--data-dir', join(dir, name)], { env }));
    }
    const direct = groups.map(memcachedPort);
    const proxy = await startNutcracker(dir, direct);

    const c = await Memcached.connect(proxy.port);
    const keys = Array.from({ length: KEYS }, (_, i) => `user:${i}`);
    const valueOf = (i: number): string => `value ${i} ${'x'.repeat(i % 40)}`;
    c.send(keys.map((k, i) => `set ${k} ${i} 0 ${valueOf(i).length}\r\n${valueOf(i)}\r\n`).join(''));
    expect(new Set(await c.replies(KEYS, 10_000))).toEqual(new Set(['STORED']));
    // Multi-key gets, which nutcracker splits by group and joins again, and single ones.
    const expected = new Map(keys.map((k, i) => [k, { flags: String(i), value: valueOf(i) }]));
    expect(await readAll(c, [...keys, 'user:missing'], 40)).toEqual(expected);
    expect(await readAll(c, keys, 1)).toEqual(expected);

    // Each key is on exactly one group, with its value and flags; both groups hold some.
    const held = await Promise.all(direct.map(async (port) => readAll(await Memcached.connect(port), keys, 100)));
    for (const k of keys) {
      const where = held.filter((items) => items.has(k));
      expect(where, k).toHaveLength(1);
      expect(where[0]?.get(k), k).toEqual(expected.get(k));
    }
    const counts = held.map((items) => items.size);
    expect(counts[0], `keys per group: ${counts.join(', ')}`).toBeGreaterThan(KEYS / 4);
    expect(counts[1], `keys per group: ${counts.join(', ')}`).toBeGreaterThan(KEYS / 4);
    // And nothing else: each node's whole store (its line protocol) is its share.
    for (const [i, node] of groups.entries()) {
      const line = await LineClient.connect(node.port);
      expect(await line.call('DBSIZE')).toBe(`DBSIZE ${counts[i]}`);
    }

    // nutcracker forwards `version` to one group and answers `quit` by closing.
    c.send('version\r\nquit\r\n');
    expect(await c.replies(1)).toEqual([expect.stringMatching(/^VERSION 1\.6\.\d+-merkle-kv-/)]);
    await expect(c.replies(1)).rejects.toThrow(/connection closed/);
    expect(proxy.log()).not.toMatch(/error/i);
  }, 20_000);
});
