import { connect } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { LineClient, tempDir } from '../helpers.js';
import { rssOf, spawnNode } from '../process.js';

describe('a client that asks for much and reads nothing', () => {
  it('does not make the node build every reply at once; other clients are served meanwhile', async () => {
    const node = await spawnNode(['--node-id', 'slow', '--data-dir', join(tempDir(), 'db')]);
    const pid = node.child.pid as number;
    const other = await LineClient.connect(node.port);
    expect(await other.call(`SET big ${'x'.repeat(1024 * 1024 - 64)}`)).toBe('OK');
    const before = rssOf(pid);
    const slow = connect({ port: node.port, host: '127.0.0.1' });
    onTestFinished(() => {
      slow.destroy();
    });
    await new Promise((resolve) => slow.once('connect', resolve));
    slow.pause();
    // A thousand replies of 1 MiB: built in one batch they took over 1.5 GB.
    slow.write('GET big\r\n'.repeat(1000));
    let peak = 0;
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 100));
      peak = Math.max(peak, rssOf(pid));
    }
    expect(peak - before).toBeLessThan(150 * 1024 * 1024);
    expect(await other.call('SET small 1')).toBe('OK');
    expect(await other.call('GET small')).toBe('VALUE 1');
  }, 30_000);
});
