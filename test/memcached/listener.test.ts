import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { makeCerts } from '../certs.js';
import { LineClient, startTestNode, tempDir } from '../helpers.js';
import { startCluster, valueOn, waitFor } from '../replication/cluster.js';
import { mc } from './socket.js';

/** The node runs in this process: the tools must run without blocking it. */
const run = promisify(execFile);
const hasTools = spawnSync('sh', ['-c', 'command -v memccapable']).status === 0;
/** With CI=true the libmemcached tools are installed (.ci/run) and their tests must run. */
const runTools = hasTools || process.env.CI === 'true';

const memcachedFlags = { 'memcached.enabled': 'true', 'memcached.port': '0' };

describe('the memcached listener', () => {
  it('serves the text protocol beside the line protocol, on the same store, whole and byte by byte', async () => {
    const node = await startTestNode(memcachedFlags);
    const port = node.memcachedAddress?.port as number;
    const c = await mc(port);
    const value = Buffer.from([0x61, 0x0d, 0x0a, 0x00, 0xff, 0x62]);
    const set = Buffer.concat([Buffer.from('set bin 42 0 6\r\n'), value, Buffer.from('\r\n')]);
    for (const byte of set) c.send(Buffer.from([byte]));
    expect(await c.until(/STORED\r\n/)).toBe('STORED\r\n');
    c.send('get bin\r\n');
    expect(Buffer.from(await c.until(/END\r\n/), 'latin1')).toEqual(Buffer.concat([Buffer.from('VALUE bin 42 6\r\n'), value, Buffer.from('\r\nEND\r\n')]));
    // Written on one listener, read on the other, both ways.
    c.send('set greeting 0 0 5\r\nhello\r\n');
    await c.until(/STORED\r\n/);
    const line = await LineClient.connect(node.address.port);
    expect(await line.call('GET greeting')).toBe('VALUE hello');
    expect(await line.call('INC visits 41')).toBe('VALUE 41');
    c.send('incr visits 1\r\nget visits\r\n');
    expect(await c.until(/END\r\n/)).toBe('42\r\nVALUE visits 0 2\r\n42\r\nEND\r\n');
    expect(await line.call('GET visits')).toBe('VALUE 42');
    // A value over the limit is refused and skipped whole: the connection stays in step.
    c.send(`set big 0 0 ${2 * 1024 * 1024}\r\n`);
    c.send(Buffer.alloc(2 * 1024 * 1024, 0x0a));
    c.send('\r\nversion\r\n');
    expect(await c.until(/VERSION .*\r\n/)).toMatch(/^SERVER_ERROR object too large for cache\r\nVERSION 1\.6\.\d+-merkle-kv-/);
    // memcached's default item size (-I 1m) counts key and header: 1 MiB of data does not fit, 1 MiB - 60 does (key "m").
    for (const [bytes, reply] of [[1024 * 1024, 'SERVER_ERROR object too large for cache'], [1024 * 1024 - 60, 'STORED']] as const) {
      c.send(`set m 0 0 ${bytes}\r\n`);
      c.send(Buffer.alloc(bytes, 0x61));
      c.send('\r\n');
      expect(await c.until(/\r\n/, 10_000)).toBe(`${reply}\r\n`);
    }
    c.send('bogus\r\nquit\r\n');
    expect(await c.until(/ERROR\r\n/)).toBe('ERROR\r\n');
    await c.closed;
  });

  it('reports stats and stats settings as memcached tooling reads them, counting hits and misses', async () => {
    const node = await startTestNode(memcachedFlags);
    const port = node.memcachedAddress?.port as number;
    const c = await mc(port);
    const stats = async (group = ''): Promise<Map<string, string>> => {
      c.send(`stats${group === '' ? '' : ` ${group}`}\r\n`);
      const text = await c.until(/END\r\n/);
      return new Map(text.split('\r\n').filter((l) => l.startsWith('STAT ')).map((l) => l.split(' ').slice(1) as [string, string]));
    };
    c.send('set a 0 0 1\r\n1\r\ndelete a\r\ndelete a\r\nincr a 1\r\ncas a 0 0 1 1\r\nx\r\nget a b\r\n');
    await c.until(/END\r\n/);
    let s = await stats();
    // What memcached_exporter requires (the cas counters) and what it reads.
    for (const name of ['uptime', 'version', 'curr_connections', 'total_connections', 'cmd_get', 'cmd_set', 'cas_misses', 'cas_hits', 'cas_badval', 'bytes', 'curr_items', 'evictions']) {
      expect(s.has(name), name).toBe(true);
    }
    expect([s.get('cmd_set'), s.get('delete_hits'), s.get('delete_misses'), s.get('incr_misses'), s.get('cas_misses'), s.get('get_misses')]).toEqual(['2', '1', '1', '1', '1', '2']);
    expect(Number(s.get('limit_maxbytes'))).toBeGreaterThanOrEqual(Number(s.get('bytes')));
    expect(Number(s.get('bytes'))).toBeGreaterThan(0);
    expect(s.get('version')).toMatch(/^1\.6\.\d+-merkle-kv-/);
    // Items stored through the listener (set; the cas on a missing key stored nothing), the item live now.
    expect([s.get('total_items'), s.get('curr_items'), s.get('get_expired'), s.get('evictions')]).toEqual(['1', '0', '0', '0']);
    // This listener's bytes: what it read so far (the requests above and two stats lines), what it wrote.
    const requests = 'set a 0 0 1\r\n1\r\ndelete a\r\ndelete a\r\nincr a 1\r\ncas a 0 0 1 1\r\nx\r\nget a b\r\nstats\r\n';
    expect(Number(s.get('bytes_read'))).toBe(requests.length);
    expect(Number(s.get('bytes_written'))).toBeGreaterThan(40);
    // A line-protocol client's bytes are not the memcached listener's.
    const line = await LineClient.connect(node.address.port);
    expect(await line.call('SET other value')).toBe('OK');
    c.send('set gone 0 1 1\r\nx\r\nincr n 1\r\n');
    await c.until(/NOT_FOUND\r\n/);
    await new Promise((r) => setTimeout(r, 1100));
    c.send('get gone\r\n');
    await c.until(/END\r\n/);
    const after = await stats();
    expect(Number(after.get('bytes_read'))).toBe(requests.length + 'set gone 0 1 1\r\nx\r\nincr n 1\r\nget gone\r\nstats\r\n'.length);
    expect([after.get('total_items'), after.get('get_expired'), after.get('curr_items')]).toEqual(['2', '1', '1']);
    const settings = await stats('settings');
    expect([settings.get('tcpport'), settings.get('maxconns'), settings.get('cas_enabled'), settings.get('evictions')]).toEqual([String(port), '1000', 'yes', 'off']);
    expect(settings.get('item_size_max')).toBe('1048576');
    c.send('stats reset\r\n');
    expect(await c.until(/RESET\r\n/)).toBe('RESET\r\n');
    s = await stats();
    expect([s.get('cmd_set'), s.get('delete_hits')]).toEqual(['0', '0']);
    expect(await stats('items')).toEqual(new Map());
  });

  it("takes the client port's TLS setting", async () => {
    const certs = makeCerts();
    const node = await startTestNode({ ...memcachedFlags, 'network.tls.enabled': 'true', 'network.tls.cert_file': certs.serverCert, 'network.tls.key_file': certs.serverKey });
    const socket = tlsConnect({ port: node.memcachedAddress?.port, host: '127.0.0.1', ca: readFileSync(certs.caCert) });
    onTestFinished(() => {
      socket.destroy();
    });
    await new Promise((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
    socket.write('set t 0 0 2\r\nok\r\nget t\r\n');
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString()));
    await waitFor('replies over TLS', () => got.endsWith('END\r\n'));
    expect(got).toBe('STORED\r\nVALUE t 0 2\r\nok\r\nEND\r\n');
  });

  it('expires items on every protocol: a short real TTL', async () => {
    const node = await startTestNode(memcachedFlags);
    const c = await mc(node.memcachedAddress?.port as number);
    c.send('set brief 0 1 1\r\nx\r\n');
    await c.until(/STORED/);
    const line = await LineClient.connect(node.address.port);
    expect(await line.call('TTL brief')).toMatch(/^TTL [01]$/);
    await new Promise((r) => setTimeout(r, 1100));
    c.send('get brief\r\n');
    expect(await c.until(/END\r\n/)).toBe('END\r\n');
    expect(await line.call('GET brief')).toBe('NOT_FOUND');
  });

  it('flush_all with a delay empties the store then; a later flush_all replaces a pending one', async () => {
    const node = await startTestNode(memcachedFlags);
    const a = await mc(node.memcachedAddress?.port as number);
    a.send('set x 0 0 1\r\n1\r\nflush_all 1\r\nget x\r\n');
    expect(await a.until(/END\r\n/)).toBe('STORED\r\nOK\r\nVALUE x 0 1\r\n1\r\nEND\r\n');
    await new Promise((r) => setTimeout(r, 1200));
    a.send('get x\r\nset y 0 0 1\r\n2\r\nflush_all 1\r\nflush_all 60\r\n');
    expect(await a.until(/OK\r\nOK\r\n/)).toBe('END\r\nSTORED\r\nOK\r\nOK\r\n');
    await new Promise((r) => setTimeout(r, 1200));
    // The one-second flush was replaced by the one in a minute: y is still there.
    a.send('get y\r\n');
    expect(await a.until(/END\r\n/)).toBe('VALUE y 0 1\r\n2\r\nEND\r\n');
  });

  it('replicates memcached writes, flags and TTL included, to another node', async () => {
    const [a, b] = await startCluster(2, undefined, (i) => (i === 0 ? memcachedFlags : {}));
    if (a === undefined || b === undefined) throw new Error('no cluster');
    const c = await mc(a.node.memcachedAddress?.port as number);
    c.send('set user:1 77 3600 5\r\nalice\r\n');
    await c.until(/STORED/);
    await waitFor('replicated', () => valueOn(b, 'user:1') === 'alice');
    const rec = b.node.store.read(Buffer.from('user:1')).value as Buffer;
    const { recordClientFlags, recordExpiry } = await import('../../src/store/record.js');
    expect(recordClientFlags(rec)).toBe(77);
    expect(recordExpiry(rec)).toBeGreaterThan(Date.now() + 3_500_000);
  });

  it('works with a Node memcached client library (memcache-client): flags, CAS, incr/decr, multi-get', async () => {
    const { MemcacheClient } = await import('memcache-client');
    const node = await startTestNode(memcachedFlags);
    const client = new MemcacheClient({ server: `127.0.0.1:${node.memcachedAddress?.port}` });
    onTestFinished(() => client.shutdown());
    expect(await client.set('s', 'hello')).toEqual(['STORED']);
    // The library stores an object as JSON and marks it with a flag: the flag must come back.
    expect(await client.set('o', { a: 1, b: [2] }, { lifetime: 60 })).toEqual(['STORED']);
    expect((await client.get<{ a: number }>('o')).value).toEqual({ a: 1, b: [2] });
    const read = await client.gets<string>('s');
    expect(read.value).toBe('hello');
    expect(await client.cas('s', 'world', { casUniq: read.casUniq })).toEqual(['STORED']);
    await expect(client.cas('s', 'again', { casUniq: read.casUniq })).rejects.toThrow(/EXISTS/);
    await client.set('n', '5');
    expect(await client.incr('n', 3)).toBe('8');
    expect(await client.decr('n', 10)).toBe('0');
    // The library types a multi-get like a single one; it answers a map by key.
    const many = (await client.get<string>(['s', 'n', 'missing'])) as unknown as Record<string, { value: string } | undefined>;
    expect(Object.keys(many).sort()).toEqual(['n', 's']);
    expect(many.s?.value).toBe('world');
    expect(await client.delete('n')).toEqual(['DELETED']);
  });

  it.runIf(runTools)("passes libmemcached's memccapable ASCII checks, and its memccp/memccat/memcrm work against it", async () => {
    const node = await startTestNode(memcachedFlags);
    const port = String(node.memcachedAddress?.port);
    const capable = await run('memccapable', ['-h', '127.0.0.1', '-p', port, '-a', '-t', '5'], { encoding: 'utf8', timeout: 60_000 });
    expect(capable.stdout + capable.stderr).toMatch(/All tests passed/);
    expect(capable.stdout.match(/\[pass\]/g)).toHaveLength(27);
    const dir = tempDir();
    const file = join(dir, 'notes.txt');
    writeFileSync(file, 'line one\nline two\n');
    const servers = `--servers=127.0.0.1:${port}`;
    await run('memccp', [servers, file], { cwd: dir });
    // memccat ends what it prints with a newline of its own.
    expect((await run('memccat', [servers, 'notes.txt'], { encoding: 'utf8' })).stdout).toBe('line one\nline two\n\n');
    const line = await LineClient.connect(node.address.port);
    expect(await line.call('EXISTS notes.txt')).toBe('EXISTS 1');
    await run('memcrm', [servers, 'notes.txt']);
    expect(await line.call('EXISTS notes.txt')).toBe('EXISTS 0');
  }, 90_000);
});
