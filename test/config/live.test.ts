import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { startNode } from '../../src/node.js';
import { LineClient, silent, tempDir } from '../helpers.js';
import { reloadableNode } from './reloadable.js';

describe('settings applied live', () => {
  it('connection_timeout closes connections already open once idle that long; max_connections holds for new ones', async () => {
    const settings: Record<string, string> = { node_id: 'live', 'network.connection_timeout': '0' };
    const node = await reloadableNode(settings);
    const idle = await LineClient.connect(node.address.port);
    const busy = await LineClient.connect(node.address.port);
    expect(await idle.call('PING')).toBe('PONG');

    settings['network.connection_timeout'] = '1';
    settings['network.max_connections'] = '2';
    expect(node.reload()).toEqual({ ok: true, applied: ['network.max_connections', 'network.connection_timeout'], restart: [] });
    const third = await LineClient.connect(node.address.port);
    expect(await third.lines(1)).toEqual(['ERROR max connections reached']);
    // The idle one goes after a second; one that keeps talking stays.
    const started = Date.now();
    while (!idle.closed && Date.now() - started < 3000) {
      expect(await busy.call('PING')).toBe('PONG');
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(idle.closed).toBe(true);
    expect(busy.closed).toBe(false);
  });

  it('a node started without a way to re-read its configuration refuses to reload, and says so', async () => {
    const config = loadConfig({ flags: { node_id: 'fixed', 'network.bind_port': '0', 'mqtt.enabled': 'false', 'storage.path': join(tempDir(), 'db') } });
    const node = await startNode(config, silent);
    onTestFinished(() => node.stop());
    const c = await LineClient.connect(node.address.port);
    expect(await c.call('CONFIG RELOAD')).toBe('ERROR config reload refused: this node was started without a configuration to re-read');
  });
});
