import type * as FS from 'node:fs';
import { connect } from 'node:net';
import { afterEach, describe, expect, it, onTestFinished, vi } from 'vitest';
import { LineClient, startTestNode } from '../helpers.js';
import { waitFor } from '../replication/cluster.js';

// The write-ahead log's file writes fail while `full` is set, as on a full disk (sockets are untouched:
// they do not write through fs.writeSync).
const disk = vi.hoisted(() => ({ full: false }));
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof FS>();
  const writeSync = ((...args: Parameters<typeof fs.writeSync>) => {
    if (disk.full) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    return fs.writeSync(...args);
  }) as typeof fs.writeSync;
  return { ...fs, default: { ...fs, writeSync }, writeSync };
});

afterEach(() => {
  disk.full = false;
});

describe('a write the log cannot take (disk full), over a socket', () => {
  it('answers every request of the batch, and of the batches that shared its flush, with the error; nothing of it stays', async () => {
    const node = await startTestNode({ 'memcached.enabled': 'true', 'memcached.port': '0' });
    const a = await LineClient.connect(node.address.port);
    const b = await LineClient.connect(node.address.port);
    expect(await a.call('SET kept 1')).toBe('OK');
    disk.full = true;
    // Two connections write at once (in one turn of the event loop they share one flush): all fail,
    // the GET too, since its batch's write was undone.
    a.send('SET lost 1\r\nGET kept\r\n');
    b.send('SET other 1\r\n');
    const replies = [...(await a.lines(2)), ...(await b.lines(1))];
    for (const r of replies) expect(r).toMatch(/^ERROR .*(no space|log)/i);
    // memcached's listener reports it as SERVER_ERROR.
    const mc = connect({ port: node.memcachedAddress?.port as number, host: '127.0.0.1' });
    onTestFinished(() => {
      mc.destroy();
    });
    let got = '';
    mc.on('data', (d: Buffer) => (got += d.toString()));
    mc.write('set m 0 0 1\r\nx\r\n');
    await waitFor('the memcached reply', () => got.endsWith('\r\n'));
    expect(got).toMatch(/^SERVER_ERROR /);
    disk.full = false;
    expect(await a.call('GET lost')).toBe('NOT_FOUND');
    expect(await b.call('GET other')).toBe('NOT_FOUND');
    expect(await a.call('SET lost 2')).toBe('OK');
    expect(await b.call('GET lost')).toBe('VALUE 2');
  });
});
