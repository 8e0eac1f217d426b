import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { describe, expect, it, onTestFinished } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { tempDir } from '../helpers.js';
import { freePort, startReplicatedNode, valueOn, waitFor } from '../replication/cluster.js';
import { hasMosquitto } from '../replication/mosquitto.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');

/** The Dockerfile's final-stage ENV settings (`ENV A=1 \ B=2` lines). */
function dockerEnv(dockerfile: string): Record<string, string> {
  const final = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  const env: Record<string, string> = {};
  for (const m of final.replace(/\\\n\s*/g, ' ').matchAll(/^ENV (.+)$/gm)) {
    for (const pair of (m[1] as string).trim().split(/\s+/)) {
      const [k, v] = pair.split('=');
      if (k !== undefined && v !== undefined) env[k] = v;
    }
  }
  return env;
}

describe('deployment files', () => {
  const dockerfile = read('Dockerfile');
  const compose = read('docker-compose.yml');
  const env = dockerEnv(dockerfile);

  it('the Dockerfile builds in stages, runs as a non-root user with a data volume and a backup volume, and checks /health', () => {
    expect(dockerfile.match(/^FROM /gm)).toHaveLength(2);
    expect(dockerfile).toMatch(/^USER node$/m);
    expect(dockerfile).toMatch(/^VOLUME \/data \/backups$/m);
    expect(env).toMatchObject({ MERKLE_KV_STORAGE_PATH: '/data', MERKLE_KV_METRICS_ENABLED: 'true' });
    const health = /^HEALTHCHECK .*\n?.*127\.0\.0\.1:(\d+)\/health/m.exec(dockerfile);
    expect(health?.[1]).toBe('9178');
    // Its default command's configuration loads with the image's environment.
    const cmd = /^CMD \["--config", "([^"]+)"\]$/m.exec(dockerfile)?.[1] as string;
    const config = loadConfig({ file: join(ROOT, cmd), env });
    expect(config).toMatchObject({ network: { bind_address: '0.0.0.0' }, storage: { path: '/data', backup_path: '/backups' }, metrics: { enabled: true, port: 9178 } });
  });

  it("every node configuration docker-compose.yml runs loads, and they make one cluster of the compose file's services", () => {
    const files = [...compose.matchAll(/"--config", "(configs\/[^"]+\.toml)"/g)].map((m) => m[1] as string);
    expect(files).toEqual(['configs/docker/node1.toml', 'configs/docker/node2.toml', 'configs/docker/node3.toml']);
    const services = [...compose.matchAll(/^ {2}([a-z0-9-]+):$/gm)].map((m) => m[1]);
    const configs = files.map((f) => loadConfig({ file: join(ROOT, f), env }));
    expect(new Set(configs.map((c) => c.node_id)).size).toBe(3);
    expect(new Set(configs.map((c) => c.cluster_secret)).size).toBe(1);
    configs.forEach((c, i) => {
      expect(c.mqtt.broker_address).toBe('tcp://mosquitto:1883');
      expect(c.storage.path).toBe('/data');
      expect(c.metrics).toMatchObject({ enabled: true, bind_address: '0.0.0.0', port: 9178 });
      // Peers are the other node services, on the port each listens on.
      expect(c.anti_entropy.peer_list.sort()).toEqual(['node1', 'node2', 'node3'].filter((_, j) => j !== i).map((s) => `${s}:${c.network.bind_port}`));
    });
    for (const s of ['mosquitto', 'node1', 'node2', 'node3']) expect(services).toContain(s);
    expect(compose).toMatch(/\.\/configs\/mosquitto\.conf:\/mosquitto\/config\/mosquitto\.conf/);
    expect(compose).toMatch(/\.\/configs\/mosquitto\.acl:\/mosquitto\/config\/mosquitto\.acl/);
  });

  it.runIf(hasMosquitto || process.env.CI === 'true')(
    "configs/mosquitto.conf and its ACL run in Mosquitto: nodes replicate, and no client publishes on another node's topic",
    async () => {
      const dir = tempDir();
      const port = await freePort();
      const conf = read('configs/mosquitto.conf')
        .replace(/^listener 1883$/m, `listener ${port} 127.0.0.1`)
        .replace(/^persistence_location .*$/m, `persistence_location ${dir}/`)
        .replace(/^acl_file .*$/m, `acl_file ${join(ROOT, 'configs/mosquitto.acl')}`);
      expect(conf).toContain(`listener ${port} 127.0.0.1`);
      const file = join(dir, 'mosquitto.conf');
      writeFileSync(file, conf + (process.getuid?.() === 0 ? 'user root\n' : ''));
      const broker = spawn('mosquitto', ['-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
      let log = '';
      broker.stdout.on('data', (b: Buffer) => (log += b.toString()));
      broker.stderr.on('data', (b: Buffer) => (log += b.toString()));
      onTestFinished(() => {
        broker.kill('SIGKILL');
      });
      const url = `mqtt://127.0.0.1:${port}`;
      await waitFor(`mosquitto listening (${log})`, async () => {
        try {
          const c = await mqtt.connectAsync(url, { clientId: 'probe', reconnectPeriod: 0 });
          await c.endAsync();
          return true;
        } catch {
          return broker.exitCode !== null ? Promise.reject(new Error(`mosquitto exited: ${log}`)) : false;
        }
      });
      const a = await startReplicatedNode('node-1', { 'mqtt.broker_address': url });
      const b = await startReplicatedNode('node-2', { 'mqtt.broker_address': url });
      // A client that claims node-2's updates topic under another id: the ACL drops its message.
      const rogue = await mqtt.connectAsync(url, { clientId: 'rogue', protocolVersion: 4 });
      onTestFinished(() => rogue.endAsync(true));
      const forged = { v: 1, node: 'node-2', ops: [{ op: 'set', key: 'forged', val: 'x', hlc: '01a200ec0b0d-0000' }] };
      await rogue.publishAsync('merkle-kv/updates/node-2', JSON.stringify(forged), { qos: 1 });
      await a.node.store.set(Buffer.from('hello'), Buffer.from('world'));
      await waitFor('node-2 has the write of node-1', () => valueOn(b, 'hello') === 'world');
      await b.node.store.set(Buffer.from('back'), Buffer.from('again'));
      await waitFor('node-1 has the write of node-2', () => valueOn(a, 'back') === 'again');
      expect(valueOn(a, 'forged')).toBeUndefined();
      // Presence passes the ACL: each node sees the other online; a forged status is dropped.
      await rogue.publishAsync('merkle-kv/nodes/node-2', JSON.stringify({ v: 1, node: 'node-2', state: 'offline', address: 'x:1', version: '0', at: Date.now() + 60_000 }), { qos: 1, retain: true });
      await waitFor('node-1 sees node-2 online', () => a.node.antiEntropy.peerLines().some((l) => /node=node-2,.*state=online/.test(l)));
      await waitFor('node-2 sees node-1 online', () => b.node.antiEntropy.peerLines().some((l) => /node=node-1,.*state=online/.test(l)));
      // The forged status was sent before; give it time to arrive, had the broker let it through.
      await new Promise((r) => setTimeout(r, 300));
      expect(a.node.antiEntropy.peerLines().join('\n')).not.toMatch(/state=offline/);
    },
    30_000,
  );
});
