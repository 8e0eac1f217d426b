import { cpSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it, onTestFinished } from 'vitest';
import { Store } from '../../src/store/store.js';
import { LineClient, silent, tempDir } from '../helpers.js';
import { spawnNode } from '../process.js';
import { rootFromScratch } from './scratch.js';

const b = (s: string): Buffer => Buffer.from(s);

function openStore(path: string, fsync: 'periodic' | 'always' = 'periodic', logger = silent): Store {
  const store = Store.open({ path, nodeId: 'n1', maxClockSkewMs: 60_000, tombstoneGraceSeconds: 86_400, logger, fsync });
  onTestFinished(() => store.close());
  return store;
}

/**
 * What a crash leaves: a copy of the data directory taken while the store runs, its newest writes in
 * the log and not yet in LMDB (no LMDB commit is under way between a flush and the next turn).
 */
function crashCopy(path: string): string {
  const copy = join(tempDir(), 'crashed');
  cpSync(path, copy, { recursive: true });
  return copy;
}

/** A crash copy of a store that wrote k0..k9 = v0..v9, all still in the log, and that log segment. */
function crashedWithTenWrites(): { copy: string; segment: string } {
  const path = join(tempDir(), 'db');
  const store = openStore(path);
  for (let i = 0; i < 10; i++) void store.set(b(`k${i}`), b(`v${i}`));
  store.flush();
  const copy = crashCopy(path);
  return { copy, segment: segmentsOf(copy).find((p) => statSync(p).size > 0) as string };
}

function segmentsOf(path: string): string[] {
  return readdirSync(path)
    .filter((n) => n.startsWith('wal-'))
    .sort()
    .map((n) => join(path, n));
}


/** A logger that keeps its warnings. */
function recordingLogger(): { logger: typeof silent; warnings: string[] } {
  const warnings: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => warnings.push(line) });
  return { logger, warnings };
}

describe('write-ahead log recovery', () => {
  it('replays writes that reached only the log; a second start-up changes nothing', async () => {
    const path = join(tempDir(), 'db');
    const store = openStore(path);
    await store.set(b('old'), b('in lmdb'));
    await store.settled();
    for (let i = 0; i < 100; i++) void store.set(b(`k${i}`), b(`v${i}`));
    void store.delete(b('k7'));
    void store.delete(b('old'));
    void store.set(b('k3'), b('rewritten'));
    store.flush();
    const root = store.rootHash().toString('hex');
    const copy = crashCopy(path);
    expect(segmentsOf(copy).length).toBeGreaterThan(0);

    const recovered = openStore(copy);
    expect(recovered.readValue(b('k99')).value?.toString()).toBe('v99');
    expect(recovered.readValue(b('k3')).value?.toString()).toBe('rewritten');
    expect(recovered.readValue(b('k7')).value).toBeUndefined();
    expect(recovered.readValue(b('old')).value).toBeUndefined();
    expect(recovered.size).toBe(99);
    expect(recovered.rootHash().toString('hex')).toBe(root);
    await recovered.close();
    expect(rootFromScratch(copy)).toBe(root);
    const again = openStore(copy);
    expect(again.rootHash().toString('hex')).toBe(root);
    expect(again.size).toBe(99);
  });

  it('drops a torn last entry with a warning and keeps the rest', () => {
    const { copy, segment } = crashedWithTenWrites();
    truncateSync(segment, statSync(segment).size - 3);
    const { logger, warnings } = recordingLogger();
    const recovered = openStore(copy, 'periodic', logger);
    expect(recovered.size).toBe(9);
    expect(recovered.readValue(b('k8')).value?.toString()).toBe('v8');
    expect(recovered.readValue(b('k9')).value).toBeUndefined();
    expect(warnings.join('')).toMatch(/torn entry/);
  });

  it('refuses to start on damage before the tail, saying where and how to recover', () => {
    const { copy, segment } = crashedWithTenWrites();
    const data = readFileSync(segment);
    data[20] = (data[20] as number) ^ 0xff;
    writeFileSync(segment, data);
    expect(() => Store.open({ path: copy, nodeId: 'n1', maxClockSkewMs: 60_000, tombstoneGraceSeconds: 86_400, logger: silent })).toThrow(
      new RegExp(`${segment} is damaged at offset 0 .*anti-entropy refills it`),
    );
  });
});

/** Keys `w<writer>:<slot>` hold `<writer>:<round>:<slot>`; the round only grows. */
function parseRound(value: string): number {
  return Number(value.split(':')[1]);
}

describe.each(['periodic', 'always'] as const)('SIGKILL under pipelined writes, fsync = %s', (fsync) => {
  it('loses no acknowledged write; the root matches one recomputed from scratch; restarts change nothing', async () => {
    const dir = join(tempDir(), 'db');
    const args = ['--node-id', 'n', '--data-dir', dir, '--fsync', fsync];
    // Per key, the newest round acknowledged and the newest round sent.
    const acked = new Map<string, number>();
    const sent = new Map<string, number>();
    let round = 0;
    for (let cycle = 0; cycle < 3; cycle++) {
      const node = await spawnNode(args);
      const clients = await Promise.all([0, 1, 2, 3].map(() => LineClient.connect(node.port)));
      const writers = clients.map(async (c, w) => {
        for (;;) {
          const r = ++round;
          const slots = Array.from({ length: 16 }, (_, i) => (r * 7 + i) % 40);
          for (const s of slots) sent.set(`w${w}:${s}`, r);
          c.send(slots.map((s) => `SET w${w}:${s} ${w}:${r}:${s}\r\n`).join(''));
          try {
            const replies = await c.lines(16, 3000);
            slots.forEach((s, i) => replies[i] === 'OK' && acked.set(`w${w}:${s}`, r));
          } catch {
            return;
          }
        }
      });
      // A moment chosen at random, while writes are in flight.
      setTimeout(() => node.child.kill('SIGKILL'), 150 + Math.random() * 450);
      await Promise.all(writers);
      expect(await node.exited).toBe('SIGKILL');
    }
    expect(acked.size).toBeGreaterThan(50);

    const node = await spawnNode(args);
    const c = await LineClient.connect(node.port);
    const wrong: string[] = [];
    for (const [key, r] of acked) {
      const reply = await c.call(`GET ${key}`);
      const got = reply.startsWith('VALUE ') ? parseRound(reply.slice(6)) : -1;
      // The newest acknowledged write, or a newer one that was written but not yet acknowledged.
      if (got < r || got > (sent.get(key) as number)) wrong.push(`${key}: acked ${r}, found ${reply}`);
    }
    expect(wrong).toEqual([]);
    const hash = await c.call('HASH');
    const size = await c.call('DBSIZE');
    node.child.kill('SIGTERM');
    expect(await node.exited).toBe(0);
    expect(hash).toBe(`HASH ${rootFromScratch(dir)}`);

    const again = await spawnNode(args);
    const d = await LineClient.connect(again.port);
    expect(await d.call('HASH')).toBe(hash);
    expect(await d.call('DBSIZE')).toBe(size);
    again.child.kill('SIGTERM');
    expect(await again.exited).toBe(0);
  });
});
