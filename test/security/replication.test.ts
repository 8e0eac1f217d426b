import { spawn, spawnSync } from 'node:child_process';
import { describe, expect, it, onTestFinished } from 'vitest';
import { encodeMessages } from '../../src/replication/message.js';
import { plainState } from '../../src/store/state.js';
import { MessageSigner } from '../../src/replication/signature.js';
import { formatHlc } from '../../src/hlc.js';
import { LineClient } from '../helpers.js';
import { startCluster, valueOn, waitFor, type ClusterNode } from '../replication/cluster.js';
import { hasMosquitto, startMosquitto } from '../replication/mosquitto.js';

const skip = !hasMosquitto && process.env.CI !== 'true';
const TOPIC = 'merkle-kv/updates/node-9';

function message(node: string, key: string, val: string): Buffer {
  const [payload] = encodeMessages(node, [{ key: Buffer.from(key), state: plainState({ wall: Date.now(), counter: 0, node }, Buffer.from(val)) }], 1 << 20);
  return payload as Buffer;
}

describe('replication signatures', () => {
  const signer = new MessageSigner('s3cret');

  it('append a signature member that keeps the message one readable JSON object', () => {
    const body = message('node-9', 'k', 'v');
    const signed = signer.sign(TOPIC, body);
    const doc = JSON.parse(signed.toString()) as { node: string; sig: string };
    expect(doc.node).toBe('node-9');
    expect(doc.sig).toMatch(/^[0-9a-f]{64}$/);
    expect(signer.verify(TOPIC, signed)).toEqual(body);
  });

  it('refuse a missing, malformed or wrong signature, another topic, another secret, any changed byte', () => {
    const body = message('node-9', 'k', 'v');
    const signed = signer.sign(TOPIC, body);
    expect(signer.verify(TOPIC, body)).toBeUndefined();
    expect(signer.verify('merkle-kv/updates/node-8', signed)).toBeUndefined();
    expect(new MessageSigner('other').verify(TOPIC, signed)).toBeUndefined();
    expect(signer.verify(TOPIC, Buffer.from(signed.toString().replace(/"sig":"[0-9a-f]/, '"sig":"G')))).toBeUndefined();
    expect(signer.verify(TOPIC, Buffer.from('{"sig":"'))).toBeUndefined();
    for (let i = 0; i < signed.length; i += 7) {
      const changed = Buffer.from(signed);
      changed[i] = (changed[i] as number) ^ 0x01;
      expect(signer.verify(TOPIC, changed)).toBeUndefined();
    }
  });
});

/** Publishes `payload` with mosquitto_pub, as anyone with access to the broker could. */
function publish(port: number, topic: string, payload: Buffer | string): void {
  const run = spawnSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-t', topic, '-s'], { input: payload, timeout: 10_000 });
  expect(run.status, run.stderr?.toString()).toBe(0);
}

describe.skipIf(skip)('signed replication through Mosquitto', () => {
  it('applies signed messages, drops and counts forged ones (unsigned, badly signed, moved to another topic)', async () => {
    const broker = await startMosquitto();
    const nodes = await startCluster(2, broker.url, () => ({ cluster_secret: 's3cret' }));
    const [a, b] = nodes as [ClusterNode, ClusterNode];
    const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(broker.port), '-t', 'merkle-kv/updates/node-1', '-C', '1', '-W', '10'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    onTestFinished(() => void sub.kill('SIGKILL'));
    let seen = '';
    sub.stdout.on('data', (d: Buffer) => (seen += d.toString()));
    const subExited = new Promise((resolve) => sub.on('close', resolve));
    await new Promise((r) => setTimeout(r, 300));

    const client = await LineClient.connect(a.node.address.port);
    expect(await client.call('SET user:1 alice')).toBe('OK');
    await waitFor('the signed write on node-2', () => valueOn(b, 'user:1') === 'alice');
    await subExited;
    const shown = JSON.parse(seen) as { sig: string };
    expect(shown).toMatchObject({ v: 1, node: 'node-1', ops: [{ key: 'user:1', val: 'alice' }] });
    expect(shown.sig).toMatch(/^[0-9a-f]{64}$/);

    publish(broker.port, TOPIC, message('node-9', 'forged:1', 'unsigned'));
    publish(broker.port, TOPIC, new MessageSigner('guess').sign(TOPIC, message('node-9', 'forged:2', 'bad key')));
    // A genuine signed message of node-1, replayed on another topic.
    const genuine = new MessageSigner('s3cret').sign('merkle-kv/updates/node-1', message('node-1', 'forged:3', 'moved'));
    publish(broker.port, TOPIC, genuine);
    publish(broker.port, TOPIC, 'x'.repeat(100));
    await waitFor('forgeries rejected on both nodes', () => nodes.every((m) => m.node.replicator?.stats.rejected === 4));
    for (const m of nodes) {
      for (const k of ['forged:1', 'forged:2', 'forged:3']) expect(valueOn(m, k)).toBeUndefined();
      expect(m.node.replicator?.stats.appliedOps).toBe(m === b ? 1 : 0);
    }
    expect(await client.stats()).toContain('replication_rejected:4');

    // Signed right, by someone who holds the secret: applied.
    publish(broker.port, TOPIC, new MessageSigner('s3cret').sign(TOPIC, message('node-9', 'good', 'yes')));
    await waitFor('a rightly signed message applied', () => nodes.every((m) => valueOn(m, 'good') === 'yes'));
  });

  it('drops messages naming a node other than their topic, bad node ids, bad keys and oversized payloads, unsigned cluster', async () => {
    const broker = await startMosquitto();
    const [a] = (await startCluster(1, broker.url, () => ({ 'storage.max_value_bytes': '1000' }))) as [ClusterNode];
    const hlc = formatHlc({ wall: Date.now(), counter: 0 });
    const raw = (node: string, key: string, val: string): string => JSON.stringify({ v: 1, node, ops: [{ op: 'set', key, val, hlc }] });
    publish(broker.port, TOPIC, raw('node-8', 'other-node', 'x'));
    publish(broker.port, 'merkle-kv/updates/a b', raw('a b', 'bad-node', 'x'));
    publish(broker.port, TOPIC, raw('node-9', 'bad key', 'x'));
    publish(broker.port, TOPIC, raw('node-9', 'huge', 'v'.repeat(1001)));
    publish(broker.port, TOPIC, raw('node-9', 'k'.repeat(600), 'x'));
    publish(broker.port, TOPIC, raw('node-9', 'oversized', 'v'.repeat(80_000)));
    publish(broker.port, TOPIC, raw('node-9', 'fine', 'x'));
    await waitFor('the good one applied', () => valueOn(a, 'fine') === 'x');
    const stats = a.node.replicator?.stats;
    await waitFor('every message counted', () => stats?.receivedMessages === 7);
    expect(stats?.appliedOps).toBe(1);
    expect(stats?.invalid).toBe(6);
    expect(stats?.rejected).toBe(0);
    expect(a.node.store.size).toBe(1);
  });
});
