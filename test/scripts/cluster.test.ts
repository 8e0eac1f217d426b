import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { LineClient, tempDir } from '../helpers.js';
import { freePort, waitFor } from '../replication/cluster.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/cluster.mjs', import.meta.url));

/** Whether something accepts connections on the port. */
async function listening(port: number): Promise<boolean> {
  try {
    const c = await LineClient.connect(port);
    c.socket.destroy();
    return true;
  } catch {
    return false;
  }
}

describe('npm run cluster', () => {
  it.each(['embedded', 'mosquitto'])('starts three nodes that replicate through the %s broker, and stops them all on SIGINT', async (broker) => {
    const ports = [await freePort(), await freePort(), await freePort()];
    const mqttPort = await freePort();
    const child = spawn(process.execPath, [SCRIPT, '--ports', ports.join(','), '--metrics-ports', 'off', '--mqtt-port', String(mqttPort), '--broker', broker, '--data-dir', tempDir()], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    onTestFinished(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    await waitFor('the cluster is up', () => out.includes('[cluster] 3 nodes up'), 20_000);
    expect(out).toMatch(new RegExp(`node-3: nc 127\\.0\\.0\\.1 ${ports[2]}`));
    // One readable stream: each node's text log lines, prefixed with its name.
    expect(out).toMatch(/^\[node-2\] .*node listening/m);
    const first = await LineClient.connect(ports[0] as number);
    const last = await LineClient.connect(ports[2] as number);
    expect(await first.call('SET hello world')).toBe('OK');
    await waitFor('replicated to node-3', async () => (await last.call('GET hello')) === 'VALUE world');
    first.socket.destroy();
    last.socket.destroy();
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(out).toMatch(/\[cluster\] stopped/);
    for (const port of [...ports, mqttPort]) expect(await listening(port)).toBe(false);
  }, 40_000);
});
