import { createServer, type Socket } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { plainState } from '../../src/store/state.js';
import { PeerProof } from '../../src/antientropy/handshake.js';
import { AE_PROTOCOL_VERSION, putLine } from '../../src/antientropy/requests.js';
import { LineClient, startTestNode } from '../helpers.js';

const PUT = putLine({ key: Buffer.from('planted'), state: plainState({ wall: Date.now(), counter: 0, node: 'intruder' }, Buffer.from('x')) });

describe('anti-entropy peers prove the cluster secret', () => {
  it('refuses AE.* to plain clients, authenticated admins included, and to a wrong proof', async () => {
    const node = await startTestNode({ cluster_secret: 's3cret', 'security.password': 'pw' });
    const c = await LineClient.connect(node.address.port);
    c.send(PUT);
    expect(await c.lines(1)).toEqual(['ERROR AE.PUT is for anti-entropy peers, which prove the cluster secret first (AE.HELLO)']);
    expect(await c.call('AUTH pw')).toBe('OK');
    expect(await c.call('AE.ROOT 00 16')).toBe('ERROR AE.ROOT is for anti-entropy peers, which prove the cluster secret first (AE.HELLO)');
    expect(await c.call(`AE.PROVE ${'0'.repeat(64)}`)).toBe('ERROR AE.PROVE without AE.HELLO');
    // The right protocol with the wrong secret.
    expect(await c.provePeer('not the secret').catch((err: Error) => err.message)).toBe('server failed its proof');
    const wrong = new PeerProof('not the secret');
    const cn = wrong.nonce();
    const [, sn] = (await c.call(`AE.HELLO ${cn} ${AE_PROTOCOL_VERSION}`)).split(' ');
    expect(await c.call(`AE.PROVE ${wrong.clientProof(cn, sn as string)}`)).toBe('ERROR peer proof failed');
    c.send(PUT);
    expect((await c.lines(1))[0]).toMatch(/^ERROR AE.PUT is for anti-entropy peers/);
    expect(await c.call('GET planted')).toBe('NOT_FOUND');
    // The right secret: AE.* runs, without AUTH.
    const p = await LineClient.connect(node.address.port);
    expect(await p.provePeer('s3cret')).toBe('OK');
    p.send(PUT);
    expect(await p.lines(1)).toEqual(['OK']);
    expect(await p.call('GET planted')).toBe('ERROR NOAUTH Authentication required');
    expect(await c.call('GET planted')).toBe('VALUE x');
  });

  it('SYNC sends nothing to a server that cannot prove the secret, and takes nothing from it', async () => {
    const node = await startTestNode({ cluster_secret: 's3cret' });
    const c = await LineClient.connect(node.address.port);
    expect(await c.call('SET mine 1')).toBe('OK');
    const received: string[] = [];
    // A hostile server: it answers the handshake with made-up hex, and would offer a record to pull.
    const hostile = createServer((s: Socket) => {
      s.on('data', (chunk: Buffer) => {
        for (const line of chunk.toString().split('\r\n').filter((l) => l !== '')) {
          received.push(line.split(' ')[0] as string);
          if (line.startsWith('AE.HELLO')) s.write(`AE.CHALLENGE ${'ab'.repeat(16)} ${'cd'.repeat(32)}\r\n`);
          else s.write(`ROOT ${'0'.repeat(32)} hostile\r\n`);
        }
      });
    });
    await new Promise<void>((r) => hostile.listen(0, '127.0.0.1', r));
    onTestFinished(() => void hostile.close());
    const port = (hostile.address() as { port: number }).port;
    expect(await c.call(`SYNC 127.0.0.1 ${port}`)).toBe(
      `ERROR sync with 127.0.0.1:${port} failed: peer could not prove it holds the cluster secret (a different cluster_secret, or not a MerkleKV node)`,
    );
    expect(received).toEqual(['AE.HELLO']);
    expect(await c.call('DBSIZE')).toBe('DBSIZE 1');
    expect(await c.call('HASH')).toBe(`HASH ${node.store.rootHash().toString('hex')}`);
  });

  it('nodes with the same secret and passwords sync with each other; a node with another secret is refused', async () => {
    const flags = { cluster_secret: 'shared', 'security.password': 'pw' };
    const a = await startTestNode({ ...flags, node_id: 'a' });
    const b = await startTestNode({ ...flags, node_id: 'b' });
    const other = await startTestNode({ cluster_secret: 'other', node_id: 'o' });
    const ca = await LineClient.connect(a.address.port);
    expect(await ca.call('AUTH pw')).toBe('OK');
    expect(await ca.call('SET k v')).toBe('OK');
    expect(await ca.call(`SYNC 127.0.0.1 ${b.address.port}`)).toBe('OK');
    expect(b.store.readValue(Buffer.from('k')).value?.toString()).toBe('v');
    expect(await ca.call(`SYNC 127.0.0.1 ${other.address.port}`)).toMatch(/failed: peer could not prove it holds the cluster secret/);
    expect(other.store.size).toBe(0);
  });
});
