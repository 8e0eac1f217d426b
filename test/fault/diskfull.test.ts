import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { LineClient, tempDir } from '../helpers.js';
import { spawnNode, type NodeProcess } from '../process.js';
import { waitFor } from '../replication/cluster.js';
import { canMount, SmallDisk } from './mount.js';

/*
 * The disk filling up under a node: its data directory on a small tmpfs. Mounting needs root (and the
 * right to mount, which a container may not grant): the test says so and is skipped where it cannot.
 */
if (!canMount) console.log('disk-full test skipped: this machine does not let the tests mount a tmpfs (needs root and CAP_SYS_ADMIN)');

describe.runIf(canMount)('a full disk', () => {
  it('refuses writes with a clear error, loses nothing acknowledged, and recovers when space returns', async () => {
    const disk = new SmallDisk(join(tempDir(), 'small'), 24);
    let node: NodeProcess | undefined;
    onTestFinished(async () => {
      node?.child.kill('SIGKILL');
      await node?.exited;
      disk.unmount();
    });
    const dir = join(disk.path, 'db');
    node = await spawnNode(['--node-id', 'full', '--data-dir', dir]);
    let c = await LineClient.connect(node.port);
    const value = 'x'.repeat(64 * 1024);
    const acked: number[] = [];
    let refusal = '';
    for (let i = 0; i < 1000 && refusal === ''; i++) {
      const r = await c.call(`SET k${i} ${value}`);
      if (r === 'OK') acked.push(i);
      else refusal = r;
    }
    expect(refusal).toMatch(/^ERROR cannot append to the write-ahead log: ENOSPC/);
    expect(acked.length).toBeGreaterThan(100);
    // Still serving reads, and still refusing writes, while full.
    expect(await c.call('GET k0')).toBe(`VALUE ${value}`);
    expect(await c.call(`SET more ${value}${value}`)).toMatch(/^ERROR .*ENOSPC/);

    disk.grow(200);
    await waitFor('writes accepted again', async () => (await c.call('SET after 1')) === 'OK', 10_000);
    for (const i of acked) expect(await c.call(`GET k${i}`)).toBe(`VALUE ${value}`);
    expect(await c.call('GET more')).toBe('NOT_FOUND');

    node.child.kill('SIGKILL');
    await node.exited;
    node = await spawnNode(['--node-id', 'full', '--data-dir', dir]);
    c = await LineClient.connect(node.port);
    for (const i of acked) expect(await c.call(`GET k${i}`)).toBe(`VALUE ${value}`);
    expect(await c.call('GET after')).toBe('VALUE 1');
  }, 60_000);
});
