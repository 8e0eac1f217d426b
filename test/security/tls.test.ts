import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it, onTestFinished } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { startNode } from '../../src/node.js';
import { certsForFile, makeCerts, type Certs } from '../certs.js';
import { LineClient, silent, startTestNode, tempDir } from '../helpers.js';

function tlsFlags(certs: Certs, requireClientCert = false): Record<string, string> {
  return {
    'network.tls.enabled': 'true',
    'network.tls.cert_file': certs.serverCert,
    'network.tls.key_file': certs.serverKey,
    ...(requireClientCert ? { 'network.tls.ca_file': certs.caCert } : {}),
  };
}

/**
 * Runs `openssl s_client` against the port, types `input` once the handshake is done, and ends its input
 * once `until` has been printed (s_client closes the connection at end of input) or after 5 s.
 */
function sClient(port: number, args: string[], input: string, until: string): Promise<{ code: number | null; out: string }> {
  const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-quiet', '-no_ign_eof', '-verify_return_error', ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  onTestFinished(() => void child.kill('SIGKILL'));
  let out = '';
  const stop = setTimeout(() => child.stdin.end(), 5000);
  const seen = (d: Buffer): void => {
    out += d.toString();
    if (out.includes(until)) child.stdin.end();
  };
  child.stdout.on('data', seen);
  child.stderr.on('data', seen);
  child.stdin.write(input);
  return new Promise((resolve) =>
    child.on('close', (code) => {
      clearTimeout(stop);
      resolve({ code, out });
    }),
  );
}

describe('TLS on the client port', () => {
  const certs = certsForFile();

  it('serves clients that trust its certificate, and not plain TCP', async () => {
    const node = await startTestNode(tlsFlags(certs));
    const c = await LineClient.connect(node.address.port, { ca: readFileSync(certs.caCert) });
    expect(await c.call('SET secret:1 hidden')).toBe('OK');
    expect(await c.call('GET secret:1')).toBe('VALUE hidden');
    // A client that half-closes after its request (`echo ... | nc` over TLS) still gets its reply.
    const once = await LineClient.connect(node.address.port, { ca: readFileSync(certs.caCert) });
    once.socket.end('GET secret:1\r\n');
    expect(await once.lines(1)).toEqual(['VALUE hidden']);

    const plain = await LineClient.connect(node.address.port);
    plain.send('GET secret:1\r\n');
    await plain.waitClosed(15_000);
    expect(plain.rest).not.toContain('hidden');
    expect(await c.stats()).toContain('tls_handshake_failures:1');
    // A client that does not trust the certificate stops at the handshake.
    await expect(LineClient.connect(node.address.port, {})).rejects.toThrow(/self.signed|unable to verify|certificate/i);
  });

  it('answers openssl s_client', async () => {
    const node = await startTestNode(tlsFlags(certs));
    const { code, out } = await sClient(node.address.port, ['-CAfile', certs.caCert], 'SET user:1 alice\r\nGET user:1\r\nPING\r\n', 'PONG\r\n');
    expect(out).toContain('OK\r\nVALUE alice\r\nPONG\r\n');
    expect(code).toBe(0);
  });

  it('with ca_file, requires a client certificate signed by that CA', async () => {
    const node = await startTestNode(tlsFlags(certs, true));
    const ca = readFileSync(certs.caCert);
    const withCert = await LineClient.connect(node.address.port, { ca, cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) });
    expect(await withCert.call('PING')).toBe('PONG');

    // TLS 1.3 finishes the client's side of the handshake before the server has checked the client.
    const refused = async (): Promise<void> => {
      const c = await LineClient.connect(node.address.port, { ca });
      await c.call('PING');
    };
    await expect(refused()).rejects.toThrow();
    const other = makeCerts();
    const strange = async (): Promise<void> => {
      const c = await LineClient.connect(node.address.port, { ca, cert: readFileSync(other.clientCert), key: readFileSync(other.clientKey) });
      await c.call('PING');
    };
    await expect(strange()).rejects.toThrow();
    expect(await withCert.stats()).toContain('tls_handshake_failures:2');

    const ok = await sClient(node.address.port, ['-CAfile', certs.caCert, '-cert', certs.clientCert, '-key', certs.clientKey], 'PING\r\n', 'PONG');
    expect(ok.out).toContain('PONG');
    const no = await sClient(node.address.port, ['-CAfile', certs.caCert], 'PING\r\n', 'PONG');
    expect(no.out).not.toContain('PONG');
  });

  it('carries anti-entropy (SYNC) between nodes that both serve TLS and require client certificates', async () => {
    const a = await startTestNode({ ...tlsFlags(certs, true), node_id: 'node-a', cluster_secret: 'shh' });
    const b = await startTestNode({ ...tlsFlags(certs, true), node_id: 'node-b', cluster_secret: 'shh' });
    const opts = { ca: readFileSync(certs.caCert), cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) };
    const ca = await LineClient.connect(a.address.port, opts);
    for (let i = 0; i < 20; i++) expect(await ca.call(`SET k:${i} ${i}`)).toBe('OK');
    expect(await ca.call(`SYNC 127.0.0.1 ${b.address.port}`)).toBe('OK');
    expect(b.store.size).toBe(20);
    expect(b.store.rootHash()).toEqual(a.store.rootHash());
  });

  it('refuses to start without a certificate and key, or with files that are not PEM', async () => {
    const base = { node_id: 'n', 'storage.path': tempDir(), 'mqtt.enabled': 'false', 'network.bind_port': '0' };
    expect(() => loadConfig({ flags: { ...base, 'network.tls.enabled': 'true' } })).toThrow('network.tls.enabled needs network.tls.cert_file and network.tls.key_file');
    const missing = loadConfig({ flags: { ...base, ...tlsFlags(certs), 'network.tls.cert_file': '/nonexistent.pem' } });
    await expect(startNode(missing, silent)).rejects.toThrow('network.tls.cert_file: cannot read /nonexistent.pem: ENOENT');
    const swapped = loadConfig({ flags: { ...base, ...tlsFlags(certs), 'network.tls.key_file': certs.clientKey } });
    await expect(startNode(swapped, silent)).rejects.toThrow(/network.tls: .*key values mismatch/);
  });
});
