import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { certsForFile, renewServerCert } from '../certs.js';
import { LineClient, tempDir } from '../helpers.js';
import { runCli, spawnNode, type NodeProcess } from '../process.js';
import { waitFor } from '../replication/cluster.js';

/** A node's config file: `node_id`, `body` (top-level keys first), then its data directory. */
function writeConfig(file: string, dir: string, body: string): void {
  writeFileSync(file, `node_id = "reload"\n${body}\n[storage]\npath = "${join(dir, 'db')}"\n`);
}

const USERS = (adminPassword: string): string =>
  `[security.users.admin]\npassword = "${adminPassword}"\nrole = "admin"\n[security.users.reader]\npassword = "reader-pw"\nrole = "read"\n`;

/** Sends SIGHUP and waits for the `n`-th reload to be logged (refused or done). */
async function hangUp(node: NodeProcess, n: number): Promise<void> {
  node.child.kill('SIGHUP');
  const reloads = (): number => node.stderr().match(/config reload(ed| refused)/g)?.length ?? 0;
  await waitFor(`reload ${n} logged`, () => reloads() >= n, 5000);
}

/** The log lines (JSON) whose message mentions `text`. */
function logged(node: NodeProcess, text: string): string[] {
  return node.stderr().split('\n').filter((l) => l.includes(text));
}

describe('reloading the configuration of a running node', () => {
  const certs = certsForFile();

  it('SIGHUP: a new password for new connections, sessions kept; each changed key logged, applied or needing a restart; the process lives on', async () => {
    const dir = tempDir();
    const file = join(dir, 'node.toml');
    writeConfig(file, dir, `[logging]\nlevel = "info"\n${USERS('first-pw')}`);
    const node = await spawnNode(['--config', file]);
    const old = await LineClient.connect(node.port);
    expect(await old.call('AUTH admin first-pw')).toBe('OK');

    writeConfig(file, dir, `[network]\nmax_connections = 50\n[logging]\nlevel = "info"\n${USERS('second-pw-7q')}\n[anti_entropy]\nsegment_bits = 12\n`);
    await hangUp(node, 1);
    expect(node.child.exitCode).toBeNull();
    const fresh = await LineClient.connect(node.port);
    expect(await fresh.call('AUTH admin first-pw')).toBe('ERROR invalid password');
    expect(await fresh.call('AUTH admin second-pw-7q')).toBe('OK');
    // A connection that proved itself before keeps its rights.
    expect(await old.call('SET k v')).toBe('OK');

    expect(logged(node, 'security.users changed; applied')).toHaveLength(1);
    expect(logged(node, 'network.max_connections changed; applied')[0]).toMatch(/"from":1000,"to":50/);
    expect(logged(node, 'anti_entropy.segment_bits changed; needs a restart')[0]).toMatch(/"from":16,"to":12/);
    expect(logged(node, '"msg":"config reloaded"')[0]).toMatch(/"applied":2,"restart":1/);
    // Passwords are never logged.
    expect(node.stderr()).not.toContain('second-pw-7q');

    // The key that needs a restart is reported again at the next reload; the applied ones are not.
    await hangUp(node, 2);
    expect(logged(node, 'anti_entropy.segment_bits changed; needs a restart')).toHaveLength(2);
    expect(logged(node, 'security.users changed; applied')).toHaveLength(1);
    expect(await fresh.call('PING')).toBe('PONG');
  });

  it('SIGHUP: a renewed certificate (same files, new content) is served to new TLS clients', async () => {
    const dir = tempDir();
    const [cert, key] = [join(dir, 'node.pem'), join(dir, 'node.key')];
    copyFileSync(certs.serverCert, cert);
    copyFileSync(certs.serverKey, key);
    const file = join(dir, 'node.toml');
    writeConfig(file, dir, `[network.tls]\nenabled = true\ncert_file = "${cert}"\nkey_file = "${key}"\n`);
    const node = await spawnNode(['--config', file]);
    const served = async (): Promise<string> => {
      const c = await LineClient.connect(node.port, { ca: readFileSync(certs.caCert) });
      expect(await c.call('PING')).toBe('PONG');
      return (c.socket as TLSSocket).getPeerCertificate().fingerprint256;
    };
    const fingerprint = (pem: string): string => new X509Certificate(readFileSync(pem)).fingerprint256;
    expect(await served()).toBe(fingerprint(certs.serverCert));

    const renewed = renewServerCert(certs);
    copyFileSync(renewed.cert, cert);
    copyFileSync(renewed.key, key);
    await hangUp(node, 1);
    expect(await served()).toBe(fingerprint(renewed.cert));
    expect(fingerprint(renewed.cert)).not.toBe(fingerprint(certs.serverCert));
    expect(logged(node, 'network.tls.cert_file changed; applied')).toHaveLength(1);
    expect(logged(node, 'network.tls.key_file changed; applied')).toHaveLength(1);
  });

  it('a broken config (bad TOML, a bad value, a certificate that does not load) is refused whole: logged, and the node serves on the old one', async () => {
    const dir = tempDir();
    const file = join(dir, 'node.toml');
    writeConfig(file, dir, USERS('kept-pw'));
    const node = await spawnNode(['--config', file]);

    writeFileSync(file, `node_id = "reload"\n[security\npassword = "x"\n`);
    await hangUp(node, 1);
    expect(logged(node, 'config reload refused')[0]).toMatch(/"level":50,.*TOML syntax error at line 2/);

    // A bad value beside a good change: neither is applied.
    writeConfig(file, dir, `[network]\nmax_connections = 0\n${USERS('lost-pw')}`);
    await hangUp(node, 2);
    expect(logged(node, 'config reload refused')[1]).toContain('network.max_connections must be in 1..1000000, got 0');

    // TLS switched on (a restart) with a key that is not a key: refused too.
    writeConfig(file, dir, `[network.tls]\nenabled = true\ncert_file = "${certs.serverCert}"\nkey_file = "${certs.caCert}"\n${USERS('lost-pw')}`);
    await hangUp(node, 3);
    expect(logged(node, 'config reload refused')).toHaveLength(3);

    expect(node.child.exitCode).toBeNull();
    const c = await LineClient.connect(node.port);
    expect(await c.call('AUTH admin lost-pw')).toBe('ERROR invalid password');
    expect(await c.call('AUTH admin kept-pw')).toBe('OK');
    expect(await c.call('SET still serving')).toBe('OK');
    expect(await c.call('CONFIG RELOAD')).toMatch(/^ERROR config reload refused: network\.tls: .*key_file/);
    expect(logged(node, 'config reloaded')).toHaveLength(0);
  });

  it('CONFIG RELOAD: for admins (also through merkle-kv cli), refused to other roles', async () => {
    const dir = tempDir();
    const file = join(dir, 'node.toml');
    writeConfig(file, dir, USERS('admin-pw'));
    const node = await spawnNode(['--config', file]);
    const reader = await LineClient.connect(node.port);
    expect(await reader.call('AUTH reader reader-pw')).toBe('OK');
    expect(await reader.call('CONFIG RELOAD')).toBe('ERROR NOPERM user reader (role read) may not run CONFIG');
    const admin = await LineClient.connect(node.port);
    expect(await admin.call('AUTH admin admin-pw')).toBe('OK');
    expect(await admin.call('CONFIG RELOAD')).toBe('OK applied=0 restart=0');
    expect(await admin.call('CONFIG GET x')).toBe('ERROR CONFIG command requires RELOAD');

    writeConfig(file, dir, `description = "renamed"\n[memcached]\nport = 11999\n[logging]\nlevel = "debug"\n${USERS('admin-pw')}`);
    const cli = await runCli(['cli', '-p', String(node.port), '--user', 'admin', '-a', 'admin-pw', 'CONFIG', 'RELOAD']);
    expect(cli.stdout.trim()).toBe('OK applied=2 restart=1');
    expect(cli.code).toBe(0);
    // The new level is in force: debug lines (connections opening) are logged from now on.
    await LineClient.connect(node.port);
    await waitFor('a debug line', () => logged(node, 'connection opened').length > 0, 3000);
    expect(logged(node, 'memcached.port changed; needs a restart')).toHaveLength(1);
  });

  it('a node started from flags and environment alone reloads them; flags still win over the file', async () => {
    const node = await spawnNode(['--node-id', 'flags-only', '--data-dir', join(tempDir(), 'db')], { env: { MERKLE_KV_LOGGING_LEVEL: 'info' } });
    await hangUp(node, 1);
    expect(logged(node, 'config reloaded: nothing changed')).toHaveLength(1);
    expect(node.child.exitCode).toBeNull();
    const c = await LineClient.connect(node.port);
    expect(await c.call('PING')).toBe('PONG');

    const dir = tempDir();
    const file = join(dir, 'node.toml');
    writeConfig(file, dir, '[logging]\nlevel = "info"');
    const flagged = await spawnNode(['--config', file, '--log-level', 'info']);
    writeConfig(file, dir, '[logging]\nlevel = "debug"');
    await hangUp(flagged, 1);
    expect(logged(flagged, 'config reloaded: nothing changed')).toHaveLength(1);
  });
});
