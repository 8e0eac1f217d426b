import { join } from 'node:path';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { execute, expiryOf, McCounters, type McContext } from '../../src/memcached/commands.js';
import { casUnique } from '../../src/store/index.js';
import { McParser } from '../../src/memcached/parser.js';
import { Output } from '../../src/protocol/output.js';
import { Store } from '../../src/store/store.js';
import { silent, tempDir } from '../helpers.js';

/** A store and a function that runs memcached requests against it, returning the replies as text. */
function session(): { store: Store; run: (input: string | Buffer) => Promise<string>; flushes: number[] } {
  const store = Store.open({ path: join(tempDir(), 'db'), nodeId: 'n1', maxClockSkewMs: 60_000, tombstoneGraceSeconds: 86_400, logger: silent });
  onTestFinished(() => store.close());
  const flushes: number[] = [];
  const ctx: McContext = {
    counters: new McCounters(),
    store,
    limits: { maxKeyBytes: 250, maxValueBytes: 1024 * 1024 },
    version: '9.9.9',
    schedule: (delayMs, flush) => {
      flushes.push(delayMs);
      if (delayMs === 0) flush();
    },
    stats: (group) => (group === undefined ? [['pid', process.pid], ['curr_items', store.size]] : undefined),
  };
  const parser = new McParser();
  const out = new Output();
  return {
    store,
    flushes,
    async run(input) {
      for (const req of parser.push(typeof input === 'string' ? Buffer.from(input, 'latin1') : input)) {
        out.begin();
        execute(req, ctx, out);
      }
      store.flush();
      const parts = out.take();
      const bytes = await Promise.all(parts.map(async (p) => (Buffer.isBuffer(p) ? p : (await p.after, p.bytes))));
      return Buffer.concat(bytes).toString('latin1');
    },
  };
}

describe('memcached commands on the store', () => {
  it('set/get/gets keep flags and data, binary-safe; CAS changes with every version', async () => {
    const { run } = session();
    expect(await run('set k 42 0 5\r\na\r\nbc\r\n')).toBe('STORED\r\n');
    expect(await run('get k missing\r\n')).toBe('VALUE k 42 5\r\na\r\nbc\r\nEND\r\n');
    const gets = await run('gets k\r\n');
    const cas = /^VALUE k 42 5 (\d+)\r\n/.exec(gets)?.[1];
    expect(cas).toMatch(/^\d+$/);
    expect(await run(`cas k 7 0 1 ${cas}\r\nx\r\n`)).toBe('STORED\r\n');
    expect(await run(`cas k 7 0 1 ${cas}\r\ny\r\n`)).toBe('EXISTS\r\n');
    expect(await run('cas nope 0 0 1 1\r\nx\r\n')).toBe('NOT_FOUND\r\n');
    const again = /^VALUE k 7 1 (\d+)\r\n/.exec(await run('gets k\r\n'))?.[1];
    expect(again).not.toBe(cas);
    expect(await run('set k 0 0 0 noreply\r\n\r\nget k\r\n')).toBe('VALUE k 0 0\r\n\r\nEND\r\n');
  });

  it('add, replace, append and prepend store only where memcached would; append keeps the flags', async () => {
    const { run } = session();
    expect(await run('add a 1 0 1\r\nx\r\nadd a 2 0 1\r\ny\r\n')).toBe('STORED\r\nNOT_STORED\r\n');
    expect(await run('replace zz 0 0 1\r\nx\r\nreplace a 3 0 1\r\nz\r\n')).toBe('NOT_STORED\r\nSTORED\r\n');
    expect(await run('append a 9 0 2\r\nyz\r\nprepend a 9 0 1\r\nw\r\nappend zz 0 0 1\r\nq\r\n')).toBe('STORED\r\nSTORED\r\nNOT_STORED\r\n');
    expect(await run('get a\r\n')).toBe('VALUE a 3 4\r\nwzyz\r\nEND\r\n');
  });

  it('delete, incr/decr (64-bit unsigned, wrapping, floored at 0) and touch', async () => {
    const { run } = session();
    expect(await run('set n 5 0 2\r\n10\r\nincr n 5\r\ndecr n 100\r\nincr n 18446744073709551615\r\n')).toBe('STORED\r\n15\r\n0\r\n18446744073709551615\r\n');
    expect(await run('incr n 1\r\nget n\r\n')).toBe('0\r\nVALUE n 5 1\r\n0\r\nEND\r\n');
    expect(await run('incr zz 1\r\nset s 0 0 1\r\nx\r\nincr s 1\r\n')).toBe('NOT_FOUND\r\nSTORED\r\nCLIENT_ERROR cannot increment or decrement non-numeric value\r\n');
    expect(await run('touch n 100\r\ntouch zz 1\r\n')).toBe('TOUCHED\r\nNOT_FOUND\r\n');
    expect(await run('delete n\r\ndelete n\r\ndelete s noreply\r\nget n s\r\n')).toBe('DELETED\r\nNOT_FOUND\r\nEND\r\n');
  });

  it('expiry: relative seconds, absolute Unix times, negative expires at once; gat touches', async () => {
    const now = Date.UTC(2026, 10, 22);
    expect(expiryOf(0, now)).toBe(0);
    expect(expiryOf(10, now)).toBe(now + 10_000);
    expect(expiryOf(30 * 24 * 3600, now)).toBe(now + 30 * 24 * 3600 * 1000);
    expect(expiryOf(now / 1000 + 3600, now)).toBe(now + 3_600_000);
    expect(expiryOf(now / 1000 - 3600, now)).toBeLessThan(now);
    expect(expiryOf(-1, now)).toBeLessThan(now);
    const { run, store } = session();
    expect(await run('set gone 0 -1 1\r\nx\r\nget gone\r\n')).toBe('STORED\r\nEND\r\n');
    expect(await run(`set later 0 ${Math.floor(Date.now() / 1000) + 3600} 1\r\nx\r\nget later\r\n`)).toBe('STORED\r\nVALUE later 0 1\r\nx\r\nEND\r\n');
    expect(await run('gat 100 later\r\n')).toBe('VALUE later 0 1\r\nx\r\nEND\r\n');
    const ttl = (await import('../../src/store/operations.js')).timeToLive(store, Buffer.from('later')).value as number;
    expect(ttl).toBeGreaterThan(90_000);
    expect(ttl).toBeLessThanOrEqual(100_000);
    expect(await run('gats 0 later\r\n')).toMatch(/^VALUE later 0 1 \d+\r\nx\r\nEND\r\n$/);
  });

  it('expires items as a controlled clock passes their exptime: relative, absolute, touched and gat', async () => {
    // Only Date is faked: the store's clock and every expiry check read it; timers stay real.
    vi.useFakeTimers({ toFake: ['Date'] });
    onTestFinished(() => {
      vi.useRealTimers();
    });
    const t0 = Date.UTC(2026, 10, 22, 12);
    vi.setSystemTime(t0);
    const { run } = session();
    const absolute = t0 / 1000 + 100;
    expect(await run(`set rel 0 10 1\r\nr\r\nset abs 0 ${absolute} 1\r\na\r\nset tch 0 10 1\r\nt\r\nset gat 0 10 1\r\ng\r\n`)).toBe('STORED\r\n'.repeat(4));
    vi.setSystemTime(t0 + 9_000);
    expect(await run('touch tch 20\r\ngat 20 gat\r\nget rel\r\n')).toBe('TOUCHED\r\nVALUE gat 0 1\r\ng\r\nEND\r\nVALUE rel 0 1\r\nr\r\nEND\r\n');
    vi.setSystemTime(t0 + 10_001);
    expect(await run('get rel tch gat abs\r\n')).toBe('VALUE tch 0 1\r\nt\r\nVALUE gat 0 1\r\ng\r\nVALUE abs 0 1\r\na\r\nEND\r\n');
    // An expired item is gone for every command, not only get.
    expect(await run('incr rel 1\r\nappend rel 0 0 1\r\nx\r\nadd rel 0 0 1\r\nn\r\n')).toBe('NOT_FOUND\r\nNOT_STORED\r\nSTORED\r\n');
    vi.setSystemTime(t0 + 29_001);
    expect(await run('get tch gat abs\r\n')).toBe('VALUE abs 0 1\r\na\r\nEND\r\n');
    vi.setSystemTime(t0 + 100_001);
    expect(await run('get abs rel\r\n')).toBe('VALUE rel 0 1\r\nn\r\nEND\r\n');
  });

  it('sees what the MerkleKV protocol wrote: counters as numbers, sets not at all', async () => {
    const { run, store } = session();
    await store.set(Buffer.from('plain'), Buffer.from('hello'));
    const { increment } = await import('../../src/store/operations.js');
    increment(store, Buffer.from('ctr'), 41n);
    expect(await run('get plain ctr\r\nincr ctr 1\r\n')).toBe('VALUE plain 0 5\r\nhello\r\nVALUE ctr 0 2\r\n41\r\nEND\r\n42\r\n');
    const { addMembers } = await import('../../src/store/setops.js');
    addMembers(store, Buffer.from('set'), [Buffer.from('m')]);
    expect(await run('get set\r\nadd set 0 0 1\r\nx\r\nset set 0 0 1\r\nx\r\nget set\r\n')).toBe('END\r\nNOT_STORED\r\nSTORED\r\nVALUE set 0 1\r\nx\r\nEND\r\n');
  });

  it('refuses keys MerkleKV cannot hold, flushes (now or later), and answers version, verbosity and stats', async () => {
    const { run, flushes } = session();
    expect(await run('set \xff 0 0 1\r\nx\r\nget \xff a\r\n')).toBe('CLIENT_ERROR bad command line format\r\nEND\r\n');
    expect(await run('set a 0 0 1\r\nx\r\nflush_all\r\nget a\r\nflush_all 10 noreply\r\n')).toBe('STORED\r\nOK\r\nEND\r\n');
    expect(flushes).toEqual([0, 10_000]);
    expect(await run('version\r\nverbosity 1\r\nstats\r\nstats junk\r\nstats a b\r\n')).toBe(
      `VERSION 9.9.9\r\nOK\r\nSTAT pid ${process.pid}\r\nSTAT curr_items 0\r\nEND\r\nERROR\r\nERROR\r\n`,
    );
  });

  it('derives CAS uniques from the record, in 1 .. 2^63 - 1 (what signed 64-bit clients and libmemcached hold)', () => {
    const rec = Buffer.alloc(64);
    const item = { value: Buffer.alloc(0), flags: 0, expiresAt: 0, counter: false, rec };
    expect(casUnique(item)).toBe(1n);
    rec.writeBigUInt64BE(12345n, 10);
    expect(casUnique(item)).toBe(12345n);
    rec.writeBigUInt64BE(2n ** 64n - 1n, 10);
    expect(casUnique(item)).toBe(2n ** 63n - 1n);
    // The top bit alone: the rest is 0, which is never a unique.
    rec.writeBigUInt64BE(2n ** 63n, 10);
    expect(casUnique(item)).toBe(1n);
  });
});
