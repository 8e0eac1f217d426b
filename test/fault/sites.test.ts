import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { LineClient, tempDir } from '../helpers.js';
import { freePort, startReplicatedNode, valueOn, waitFor, type ClusterNode } from '../replication/cluster.js';
import { hasMosquitto } from '../replication/mosquitto.js';
import { Proxy } from './proxy.js';

/*
 * Two sites, each with its own Mosquitto and two nodes, the brokers bridged with configs/bridge/*.conf
 * (ports, paths and the other site's address filled in). The link between the sites goes through a
 * proxy the test cuts: writes go on at both sites, then the link heals and both sites converge.
 */
const ROOT = join(import.meta.dirname, '../..');

async function startSiteBroker(file: string, fill: (conf: string) => string): Promise<{ port: number }> {
  const dir = tempDir();
  const port = await freePort();
  const acl = join(dir, 'bridge.acl');
  writeFileSync(acl, readFileSync(join(ROOT, 'configs/bridge/bridge.acl')));
  execFileSync('mosquitto_passwd', ['-c', '-b', join(dir, 'bridge.passwd'), 'bridge', 'change-me'], { stdio: 'ignore' });
  let conf = readFileSync(join(ROOT, file), 'utf8')
    .replace(/^listener 1883$/m, `listener ${port} 127.0.0.1`)
    .replace(/^persistence_location .*$/m, `persistence_location ${dir}/`)
    .replace(/^acl_file .*$/m, `acl_file ${acl}`)
    .replace(/^password_file .*$/m, `password_file ${join(dir, 'bridge.passwd')}`)
    .replace(/^log_type (warning|notice)$/gm, '');
  conf = fill(conf) + (process.getuid?.() === 0 ? '\nuser root\n' : '\n');
  const path = join(dir, 'mosquitto.conf');
  writeFileSync(path, conf);
  const proc = spawn('mosquitto', ['-c', path], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (b: Buffer) => (log += b.toString()));
  onTestFinished(() => {
    proc.kill('SIGKILL');
  });
  await waitFor(`mosquitto (${file}) listening: ${log}`, async () => {
    if (proc.exitCode !== null) throw new Error(`mosquitto exited: ${log}`);
    const c = await LineClient.connect(port).then(
      (cl) => (cl.socket.destroy(), true),
      () => false,
    );
    return c;
  });
  return { port };
}

describe.runIf(hasMosquitto || process.env.CI === 'true')('two sites, bridged', () => {
  it('replicates across the bridge, keeps writing on both sides while it is cut, and converges when it heals', async () => {
    const siteA = await startSiteBroker('configs/bridge/site-a.conf', (c) => c);
    const link = await Proxy.start(siteA.port);
    onTestFinished(() => link.close());
    // The bridge retries quickly here (the example backs off up to 30 s).
    const siteB = await startSiteBroker('configs/bridge/site-b.conf', (c) =>
      c.replace(/^address .*$/m, `address 127.0.0.1:${link.port}`).replace(/^restart_timeout .*$/m, 'restart_timeout 1 2'),
    );
    // Two nodes per site; anti-entropy within a site only, so whatever crosses does so over the bridge.
    const ports = [await freePort(), await freePort(), await freePort(), await freePort()];
    const node = (i: number, broker: number, peer: number): Promise<ClusterNode> =>
      startReplicatedNode(`node-${i + 1}`, {
        'network.bind_port': String(ports[i]),
        'mqtt.broker_address': `mqtt://127.0.0.1:${broker}`,
        'anti_entropy.peer_list': `127.0.0.1:${ports[peer]}`,
        'anti_entropy.interval_seconds': '1',
        // The other site's nodes are on the bridged broker too: not peers here.
        'anti_entropy.discover_peers': 'false',
      });
    const nodes = [await node(0, siteA.port, 1), await node(1, siteA.port, 0), await node(2, siteB.port, 3), await node(3, siteB.port, 2)];
    const [a1, a2, b1, b2] = nodes as [ClusterNode, ClusterNode, ClusterNode, ClusterNode];
    const client = async (m: ClusterNode): Promise<LineClient> => LineClient.connect(m.node.address.port);
    const [ca1, ca2, cb1, cb2] = [await client(a1), await client(a2), await client(b1), await client(b2)];

    expect(await ca1.call('SET from-a hello')).toBe('OK');
    await waitFor('site A write on site B', () => valueOn(b2, 'from-a') === 'hello');
    expect(await cb1.call('SET from-b hi')).toBe('OK');
    await waitFor('site B write on site A', () => valueOn(a2, 'from-b') === 'hi');
    expect(await ca1.call('SADD tags kept dropped')).toBe('SADD 2');
    await waitFor('the set on site B', () => b1.node.store.readValue(Buffer.from('tags')).value !== undefined);
    await waitFor('presence across the bridge', () => a1.node.antiEntropy.peerLines().some((l) => /node=node-4,.*state=online/.test(l)));

    link.cut();
    for (let i = 0; i < 10; i++) expect(await ca1.call(`SET k${i} a${i}`)).toBe('OK');
    for (let i = 0; i < 10; i++) expect(await cb1.call(`SET k${i} b${i}`)).toBe('OK');
    for (let i = 0; i < 10; i++) expect(await ca2.call('INC visits 5')).toMatch(/^VALUE /);
    for (let i = 0; i < 10; i++) expect(await cb2.call('INC visits 7')).toMatch(/^VALUE /);
    expect(await ca2.call('SADD tags a1 a2')).toBe('SADD 2');
    expect(await cb2.call('SADD tags b1')).toBe('SADD 1');
    expect(await cb2.call('SREM tags dropped')).toBe('SREM 1');
    await new Promise((r) => setTimeout(r, 1500));
    // Cut off: each site has only its own writes.
    expect(valueOn(b2, 'k0')).toBe('b0');
    expect(valueOn(a2, 'k0')).toBe('a0');

    const healed = Date.now();
    link.heal();
    const expected = { k: Array.from({ length: 10 }, (_, i) => `b${i}`), visits: '120', tags: 'MEMBERS 4\na1\na2\nb1\nkept' };
    const clients = [ca1, ca2, cb1, cb2];
    await waitFor(
      'both sites converged',
      async () => {
        for (const [i, m] of nodes.entries()) {
          if (expected.k.some((v, j) => valueOn(m, `k${j}`) !== v)) return false;
          if ((await (clients[i] as LineClient).call('GET visits')) !== `VALUE ${expected.visits}`) return false;
          if ((await (clients[i] as LineClient).members('tags')) !== expected.tags) return false;
        }
        const roots = nodes.map((m) => m.node.store.rootHash().toString('hex'));
        return roots.every((r) => r === roots[0]);
      },
      30_000,
    );
    console.log(`two sites converged ${Date.now() - healed} ms after the link between them healed`);
  }, 60_000);
});
