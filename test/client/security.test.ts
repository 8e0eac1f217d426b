import { readFileSync } from 'node:fs';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ConnectionError, createClient, ReplyError, type ClientOptions, type MerkleKVClient } from '../../src/client/index.js';
import { certsForFile } from '../certs.js';
import { startTestNode } from '../helpers.js';
import { relay, until } from './fakes.js';

function client(port: number, options: ClientOptions = {}): MerkleKVClient {
  const c = createClient({ port, ...options });
  onTestFinished(() => c.disconnect());
  return c;
}

const USERS = JSON.stringify({
  reader: { password: 'r-secret', role: 'read' },
  writer: { password: 'w-secret', role: 'write' },
});

describe('client security', () => {
  const certs = certsForFile();
  const tlsFlags = (requireClientCert = false): Record<string, string> => ({
    'network.tls.enabled': 'true',
    'network.tls.cert_file': certs.serverCert,
    'network.tls.key_file': certs.serverKey,
    ...(requireClientCert ? { 'network.tls.ca_file': certs.caCert } : {}),
  });

  it('sends AUTH <password> on connect; a wrong one rejects connect() with ReplyError', async () => {
    const node = await startTestNode({ 'security.password': 'hunter2' });
    const port = node.address.port;
    const c = client(port, { password: 'hunter2' });
    await c.connect();
    await c.set('k', 'v');
    expect(await c.get('k')).toBe('v');
    const wrong = client(port, { password: 'nope' });
    const err = await wrong.connect().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReplyError);
    expect(err).toMatchObject({ message: 'invalid password', command: 'AUTH' });
    expect(wrong.status).toBe('lost');
    // Without AUTH: PING is answered, the rest refused.
    const anonymous = client(port);
    await anonymous.connect();
    expect(await anonymous.ping()).toBe('PONG');
    await expect(anonymous.get('k')).rejects.toThrow(new ReplyError('NOAUTH Authentication required', 'GET'));
    await anonymous.auth('hunter2');
    expect(await anonymous.get('k')).toBe('v');
  });

  it('AUTH <user> <password> grants the user its role', async () => {
    const node = await startTestNode({ 'security.users': USERS });
    const reader = client(node.address.port, { user: 'reader', password: 'r-secret' });
    const writer = client(node.address.port, { user: 'writer', password: 'w-secret' });
    await Promise.all([reader.connect(), writer.connect()]);
    await writer.set('k', 'v');
    expect(await reader.get('k')).toBe('v');
    await expect(reader.set('k', 'x')).rejects.toThrow('NOPERM user reader (role read) may not run SET');
    await expect(writer.flushdb()).rejects.toThrow('NOPERM user writer (role write) may not run FLUSHDB');
    // Switching users on a connection, and a failed switch leaving the user as it was.
    await reader.auth('writer', 'w-secret');
    await reader.set('k', 'x');
    await expect(reader.auth('reader', 'wrong')).rejects.toThrow('invalid password');
    await reader.set('k', 'y');
  });

  it('authenticates again after a reconnection, as the last successful auth() did', async () => {
    const node = await startTestNode({ 'security.users': USERS });
    const r = await relay(node.address.port);
    const c = client(r.port, { reconnect: { initialDelay: 10 } });
    await c.connect();
    await c.auth('writer', 'w-secret');
    await c.set('k', 'v');
    r.cut();
    await until(() => r.accepted() === 2 && c.status === 'ready');
    await c.set('k', 'after');
    expect(await c.get('k')).toBe('after');
  });

  it('talks TLS, trusting the CA given; refuses a certificate it cannot trust', async () => {
    const node = await startTestNode({ ...tlsFlags(), 'security.password': 'hunter2' });
    const port = node.address.port;
    const c = client(port, { tls: { ca: readFileSync(certs.caCert) }, password: 'hunter2' });
    await c.connect();
    await c.set('k', 'over tls');
    expect(await c.get('k')).toBe('over tls');
    // The system's roots do not know the test CA.
    await expect(client(port, { tls: true }).connect()).rejects.toThrow(ConnectionError);
    // A plain connection to a TLS port: the node hangs up during the handshake.
    await expect(client(port, { password: 'hunter2' }).connect()).rejects.toThrow(ConnectionError);
  });

  it('presents a client certificate when the node asks for one', async () => {
    const node = await startTestNode(tlsFlags(true));
    const port = node.address.port;
    const ca = readFileSync(certs.caCert);
    const c = client(port, { tls: { ca, cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) } });
    await c.connect();
    expect(await c.ping()).toBe('PONG');
    await expect(client(port, { tls: { ca } }).connect()).rejects.toThrow(ConnectionError);
  });
});
