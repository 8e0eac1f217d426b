import { createServer } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import {
  ConnectionError,
  createClient,
  MerkleKVError,
  TimeoutError,
  UnexpectedReplyError,
  type ClientOptions,
  type MerkleKVClient,
} from '../../src/client/index.js';
import { startTestNode } from '../helpers.js';
import { fakeServer, relay, until } from './fakes.js';

function client(port: number, options: ClientOptions = {}): MerkleKVClient {
  const c = createClient({ port, ...options });
  onTestFinished(() => c.disconnect());
  return c;
}

/** A port nothing listens on: one that was just closed. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('client connection', () => {
  it('pipelines: 1,000 requests are written before any reply, and the replies come back in order', async () => {
    // This server answers nothing until it holds all 1,000 requests: a client that waited for each
    // reply before sending the next would time out.
    const lines: string[] = [];
    const server = await fakeServer((line, socket) => {
      lines.push(line);
      if (lines.length === 1000) socket.write(lines.map((l) => `VALUE ${l.slice(4)}\r\n`).join(''));
    });
    const c = client(server.port, { timeout: 2000 });
    await c.connect();
    const replies = await Promise.all(Array.from({ length: 1000 }, (_, i) => c.get(`key:${i}`)));
    expect(replies).toEqual(Array.from({ length: 1000 }, (_, i) => `key:${i}`));
    expect(server.accepted()).toBe(1);
  });

  it('pipelines against a node, multi-line replies mixed with one-line ones', async () => {
    const node = await startTestNode();
    const c = client(node.address.port);
    await c.connect();
    const writes = Array.from({ length: 1000 }, (_, i) => c.set(`k:${String(i).padStart(4, '0')}`, `value ${i}`));
    const mixed = Promise.all([c.scan('k:000'), c.get('k:0001'), c.sadd('s', 'a', 'b'), c.smembers('s'), c.mget('k:0002', 'no'), c.info(), c.get('no')]);
    await Promise.all(writes);
    const [scan, one, added, members, mget, info, none] = await mixed;
    expect(scan).toEqual(Array.from({ length: 10 }, (_, i) => `k:000${i}`));
    expect([one, added, members, mget, none]).toEqual(['value 1', 2, ['a', 'b'], ['value 2', null], null]);
    expect(info.db_keys).toBe('1001');
    const reads = await Promise.all(Array.from({ length: 1000 }, (_, i) => c.get(`k:${String(i).padStart(4, '0')}`)));
    expect(reads).toEqual(Array.from({ length: 1000 }, (_, i) => `value ${i}`));
  });

  it('times out with TimeoutError, then drops that connection (its reply order is lost) and makes another', async () => {
    // The first connection never answers; the second one does.
    const server = await fakeServer((line, socket, n) => {
      if (n >= 2) socket.write(line === 'PING' ? 'PONG\r\n' : 'NOT_FOUND\r\n');
    });
    const c = client(server.port, { timeout: 200, reconnect: { initialDelay: 10 } });
    await c.connect();
    const started = Date.now();
    const [late, behind] = await Promise.allSettled([c.ping(), c.get('k')]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(late.status === 'rejected' && late.reason).toBeInstanceOf(TimeoutError);
    expect(late.status === 'rejected' && late.reason).toMatchObject({ code: 'ERR_TIMEOUT', timeout: 200, message: 'PING timed out after 200 ms' });
    // The request behind it could not have its reply matched any more either.
    expect(behind.status === 'rejected' && behind.reason).toBeInstanceOf(ConnectionError);
    expect(behind.status === 'rejected' && behind.reason).toBeInstanceOf(MerkleKVError);
    expect(behind.status === 'rejected' && (behind.reason as Error).message).toMatch(/^connection reset: a PING request timed out/);
    await until(() => server.sockets[0]?.destroyed === true);
    expect(await c.ping()).toBe('PONG');
    expect(server.accepted()).toBe(2);
    // A timeout per call overrides the client's.
    expect(await c.command('PING', { timeout: 50 })).toEqual(['PONG']);
  });

  it('a request waiting for a connection that never comes times out too', async () => {
    const r = await relay(await closedPort());
    const node = await startTestNode();
    r.target = node.address.port;
    const c = client(r.port, { timeout: 150, reconnect: { initialDelay: 20, maxDelay: 40 } });
    await c.connect();
    r.refusing = true;
    r.cut();
    await until(() => c.status === 'reconnecting');
    await expect(c.get('k')).rejects.toBeInstanceOf(TimeoutError);
    r.refusing = false;
    await until(() => c.status === 'ready');
    expect(await c.get('k')).toBeNull();
  });

  it('reconnects with backoff when the node goes away: requests in flight fail, new ones wait', async () => {
    // A request in flight when the connection drops rejects with ConnectionError.
    const server = await fakeServer((_line, socket, n) => {
      if (n === 1) socket.destroy();
      else socket.write('PONG\r\n');
    });
    const c = client(server.port, { reconnect: { initialDelay: 10 } });
    const errors: Error[] = [];
    const attempts: number[] = [];
    c.on('error', (err) => errors.push(err));
    c.on('reconnecting', ({ attempt }) => attempts.push(attempt));
    await c.connect();
    const lost = await c.ping().catch((e: unknown) => e);
    expect(lost).toBeInstanceOf(ConnectionError);
    expect(await c.ping()).toBe('PONG');
    expect(errors[0]).toBeInstanceOf(ConnectionError);
    expect(attempts).toEqual([1]);
  });

  it('reconnects to a node stopped and started again, requests made meanwhile answered once it is back', async () => {
    const first = await startTestNode({ node_id: 'first' });
    const r = await relay(first.address.port);
    const c = client(r.port, { timeout: 10_000, reconnect: { initialDelay: 20, maxDelay: 200 } });
    let connects = 0;
    const delays: number[] = [];
    c.on('connect', () => connects++);
    c.on('reconnecting', ({ delay }) => delays.push(delay));
    await c.connect();
    await c.set('k', 'before');
    // The node stops: its connections close; the relay refuses until a node is back.
    r.refusing = true;
    await first.stop();
    await until(() => delays.length >= 3);
    const waiting = c.get('k');
    const second = await startTestNode({ node_id: 'second' });
    r.target = second.address.port;
    r.refusing = false;
    // A new, empty node: the key is gone, but the request made while it was down was answered.
    expect(await waiting).toBeNull();
    expect(connects).toBe(2);
    // Exponential backoff: each wait doubles, up to maxDelay.
    expect(delays.slice(0, 3)).toEqual([20, 40, 80]);
    expect(Math.max(...delays)).toBeLessThanOrEqual(200);
  });

  it('with reconnect: false, a lost connection stays lost until connect() is called again', async () => {
    const node = await startTestNode();
    const r = await relay(node.address.port);
    const c = client(r.port, { reconnect: false });
    await c.connect();
    r.cut();
    await until(() => c.status === 'lost');
    await expect(c.get('k')).rejects.toThrow(ConnectionError);
    await c.connect();
    expect(await c.ping()).toBe('PONG');
  });

  it('connect() rejects with ConnectionError when the node cannot be reached, or within connectTimeout', async () => {
    const port = await closedPort();
    const c = client(port);
    await expect(c.get('k')).rejects.toThrow('not connected: call connect() first');
    await expect(c.connect()).rejects.toThrow(new ConnectionError(`cannot connect to 127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}`));
    // A server that accepts but never shakes hands.
    const silent = await fakeServer(() => {});
    const t = client(silent.port, { tls: true, connectTimeout: 150 });
    const started = Date.now();
    await expect(t.connect()).rejects.toThrow(/cannot connect to 127\.0\.0\.1:\d+: timed out after 150 ms/);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('close() waits for the replies in flight, then ends; calls after it reject', async () => {
    const server = await fakeServer((_line, socket) => setTimeout(() => socket.write('OK\r\n'), 100));
    const c = client(server.port);
    let closed = 0;
    c.on('close', () => closed++);
    await c.connect();
    const writes = [c.set('a', 1), c.set('b', 2), c.set('c', 3)];
    const closing = c.close();
    await expect(c.get('a')).rejects.toThrow('client is closed');
    await expect(Promise.all(writes)).resolves.toEqual([undefined, undefined, undefined]);
    await closing;
    expect(c.status).toBe('closed');
    expect(closed).toBe(1);
    await until(() => server.sockets[0]?.destroyed === true || server.sockets[0]?.readableEnded === true);
    await c.close();
    await expect(c.connect()).rejects.toBeInstanceOf(ConnectionError);
  });

  it('disconnect() ends at once: requests without a reply reject with ConnectionError', async () => {
    const server = await fakeServer(() => {});
    const c = client(server.port);
    await c.connect();
    const pending = c.ping().then(
      () => 'answered',
      (err: unknown) => err,
    );
    await c.disconnect();
    expect(await pending).toEqual(new ConnectionError('client disconnected'));
  });

  it('a reply of the wrong shape rejects with UnexpectedReplyError; no error listener is needed', async () => {
    const server = await fakeServer((line, socket) => socket.write(line === 'GET k' ? 'HELLO\r\n' : 'PONG\r\n'));
    const c = client(server.port, { reconnect: { initialDelay: 10 } });
    await c.connect();
    await expect(c.get('k')).rejects.toBeInstanceOf(UnexpectedReplyError);
    expect(await c.ping()).toBe('PONG');
    // The server hangs up with nobody listening for 'error': the client reconnects, nothing throws.
    server.sockets[0]?.destroy();
    await until(() => server.accepted() === 2 && c.status === 'ready');
    expect(await c.ping()).toBe('PONG');
  });
});
