import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { tempDir } from './helpers.js';

/** PEM files made for one test: a CA, a server certificate for 127.0.0.1/localhost, and a client certificate. */
export interface Certs {
  readonly dir: string;
  readonly caCert: string;
  readonly caKey: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 20_000 });
}

/** Signs a new EC key's certificate with the CA (or self-signs when `ca` is undefined). */
function issue(dir: string, name: string, subject: string, ca: { cert: string; key: string } | undefined, ext: string): void {
  openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`]);
  writeFileSync(join(dir, `${name}.ext`), ext);
  if (ca === undefined) {
    openssl(dir, ['req', '-x509', '-new', '-key', `${name}.key`, '-subj', subject, '-days', '2', '-out', `${name}.pem`, '-extensions', 'v3', '-config', `${name}.ext`]);
    return;
  }
  openssl(dir, ['req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`]);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '2', '-out', `${name}.pem`, '-extfile', `${name}.ext`]);
}

const SERVER_EXT = 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n';

/** Another server certificate and key from the same CA (a renewal): `<name>.pem` and `<name>.key` beside the others. */
export function renewServerCert(certs: Certs, name = 'renewed'): { readonly cert: string; readonly key: string } {
  issue(certs.dir, name, '/CN=localhost', { cert: certs.caCert, key: certs.caKey }, SERVER_EXT);
  return { cert: join(certs.dir, `${name}.pem`), key: join(certs.dir, `${name}.key`) };
}

/**
 * Makes a fresh CA and certificates with `openssl` in `dir` (by default a temporary directory removed
 * after the test).
 */
export function makeCerts(dir = tempDir()): Certs {
  const caExt = '[req]\ndistinguished_name=dn\n[dn]\n[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n';
  issue(dir, 'ca', '/CN=merkle-kv test CA', undefined, caExt);
  const ca = { cert: 'ca.pem', key: 'ca.key' };
  issue(dir, 'server', '/CN=localhost', ca, SERVER_EXT);
  issue(dir, 'client', '/CN=test-client', ca, 'extendedKeyUsage=clientAuth\n');
  const at = (f: string): string => join(dir, f);
  return {
    dir,
    caCert: at('ca.pem'),
    caKey: at('ca.key'),
    serverCert: at('server.pem'),
    serverKey: at('server.key'),
    clientCert: at('client.pem'),
    clientKey: at('client.key'),
  };
}

/** Certificates made once for a whole test file (call at the top of a `describe`), removed after it. */
export function certsForFile(): Certs {
  const dir = mkdtempSync(join(tmpdir(), 'merkle-kv-certs-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return makeCerts(dir);
}
