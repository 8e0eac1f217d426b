import type { Duplex } from 'node:stream';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { ServerOptions } from '../../src/server/server.js';
import { LineClient, startTestNode } from '../helpers.js';
import { streamServer, type StreamServer } from '../streams.js';

/** A server without a listener, stopped when the test finishes. */
function serverOnStreams(overrides: Partial<ServerOptions> = {}): StreamServer {
  const s = streamServer({ maxKeyBytes: 64, maxValueBytes: 4096 }, overrides);
  onTestFinished(() => s.close());
  return s;
}

/** Collects what the server sends on `stream` until `n` CRLF lines have come. */
async function readLines(stream: Duplex, n: number, timeoutMs = 5000): Promise<string[]> {
  let text = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timeout; got ${JSON.stringify(text)}`)), timeoutMs);
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('utf8');
      const lines = text.split('\r\n');
      if (lines.length - 1 >= n) {
        clearTimeout(timer);
        stream.off('data', onData);
        resolve(lines.slice(0, n));
      }
    };
    stream.on('data', onData);
  });
}

describe('connection handling', () => {
  it('answers 2000 pipelined requests in one write, in order', async () => {
    const node = await startTestNode();
    const c = await LineClient.connect(node.address.port);
    let batch = '';
    const expected: string[] = [];
    for (let i = 0; i < 1000; i++) {
      batch += `SET k${i} v${i}\r\nGET k${i}\r\n`;
      expected.push('OK', `VALUE v${i}`);
    }
    c.send(batch);
    expect(await c.lines(2000)).toEqual(expected);
  });

  it('handles requests split at every byte and many per chunk alike', async () => {
    const { open } = serverOnStreams();
    const input = 'SET a hello world\r\nGET a\nAPPEND a !\r\nMGET a b\r\n';
    const expected = ['OK', 'VALUE hello world', 'VALUE hello world!', 'VALUES 1', 'a hello world!', 'b NOT_FOUND'];
    const bytewise = open();
    const replies = readLines(bytewise, expected.length);
    for (const byte of Buffer.from(input)) {
      bytewise.write(Buffer.from([byte]));
      await new Promise((r) => setImmediate(r));
    }
    expect(await replies).toEqual(expected);
    const whole = open();
    const again = readLines(whole, 6);
    whole.write('SET a hello world\r\nGET a\nAPPEND a !\r\nMGET a b\r\n');
    expect((await again).slice(0, 2)).toEqual(['OK', 'VALUE hello world']);
  });

  it('yields between batches but keeps order when a chunk holds more requests than a batch', async () => {
    const { open } = serverOnStreams({ maxBatch: 3 });
    const s = open();
    const replies = readLines(s, 50);
    s.write(Array.from({ length: 25 }, (_, i) => `SET n${i} ${i}\nGET n${i}\n`).join(''));
    expect(await replies).toEqual(Array.from({ length: 25 }, (_, i) => ['OK', `VALUE ${i}`]).flat());
  });

  it('answers a half-closed client, then closes', async () => {
    const node = await startTestNode();
    const c = await LineClient.connect(node.address.port);
    c.socket.end('SET a b\nGET a\nGET a');
    expect(await c.lines(3)).toEqual(['OK', 'VALUE b', 'VALUE b']);
    await c.waitClosed();
  });

  it('closes on a line over the limit without waiting for its end', async () => {
    const node = await startTestNode({ 'storage.max_value_bytes': '1000' });
    const c = await LineClient.connect(node.address.port);
    expect(await c.call('PING')).toBe('PONG');
    c.send('SET k ' + 'x'.repeat(10_000)); // no newline: the server must not wait for one
    expect(await c.lines(1)).toEqual(['ERROR line too long']);
    await c.waitClosed();
    const d = await LineClient.connect(node.address.port);
    expect(await d.call('GET k')).toBe('NOT_FOUND');
  });

  it('refuses connections beyond max_connections with an ERROR line', async () => {
    const node = await startTestNode({ 'network.max_connections': '2' });
    const a = await LineClient.connect(node.address.port);
    const b = await LineClient.connect(node.address.port);
    expect(await a.call('PING')).toBe('PONG');
    expect(await b.call('PING')).toBe('PONG');
    const c = await LineClient.connect(node.address.port);
    expect(await c.lines(1)).toEqual(['ERROR max connections reached']);
    await c.waitClosed();
    a.socket.destroy();
    await a.waitClosed();
    for (let i = 0; i < 50 && node.server.connectionCount > 1; i++) await new Promise((r) => setTimeout(r, 20));
    const d = await LineClient.connect(node.address.port);
    expect(await d.call('PING')).toBe('PONG');
  });

  it('closes idle connections after connection_timeout', async () => {
    const node = await startTestNode({ 'network.connection_timeout': '1' });
    const c = await LineClient.connect(node.address.port);
    expect(await c.call('PING')).toBe('PONG');
    const started = Date.now();
    await c.waitClosed(5000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });

  it('drops a client that never reads its replies, and keeps serving others', async () => {
    const { server, open } = serverOnStreams({ drainTimeoutMs: 300 });
    const greedy = open();
    greedy.pause();
    const big = 'v'.repeat(4000);
    greedy.write(`SET big ${big}\n`);
    // Ask for far more than any stream buffer holds, and never read it.
    for (let i = 0; i < 50; i++) greedy.write('GET big\n'.repeat(200));
    for (let i = 0; i < 200 && server.connectionCount > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(server.connectionCount).toBe(0);
    const polite = open();
    const reply = readLines(polite, 1);
    polite.write('GET big\n');
    expect(await reply).toEqual([`VALUE ${big}`]);
  });

  it('answers what was received, then closes, on shutdown', async () => {
    const { server, open } = serverOnStreams();
    const s = open();
    const replies = readLines(s, 2);
    s.write('SET a 1\nGET a\n');
    expect(await replies).toEqual(['OK', 'VALUE 1']);
    const ended = new Promise((resolve) => s.once('end', resolve));
    s.resume();
    await server.close(2000);
    await ended;
    expect(server.connectionCount).toBe(0);
  });
});

describe('backpressure', () => {
  it('sends every reply exactly once to a client that reads slowly', async () => {
    const { open } = serverOnStreams({ drainTimeoutMs: 5000 });
    const s = open();
    const big = 'v'.repeat(4000);
    const requests = 400;
    const stored = readLines(s, 1);
    s.write(`SET big ${big}\n`);
    expect(await stored).toEqual(['OK']);
    let received = '';
    s.on('data', (b: Buffer) => (received += b.toString()));
    s.pause();
    // Reads only: their replies go out without waiting for a commit, into a buffer that fills up.
    for (let i = 0; i < requests / 50; i++) s.write('GET big\n'.repeat(50));
    await new Promise((r) => setTimeout(r, 200));
    s.resume();
    const expected = `VALUE ${big}\r\n`.repeat(requests);
    for (let i = 0; i < 100 && received.length < expected.length; i++) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 50));
    expect(received.length).toBe(expected.length);
    expect(received === expected).toBe(true);
  });
});
