import { readFileSync } from 'node:fs';
import { createSecureContext, rootCertificates, type ConnectionOptions, type TlsOptions } from 'node:tls';
import type { TlsConfig } from '../config/schema.js';
import { ConfigError } from '../errors.js';

/** A TLS handshake that has not finished by then is dropped (Node's default is 120 s). */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/** What TLS needs on both sides of the client port: serving clients, and reaching peers (AE, SYNC). */
export interface TlsSetup {
  readonly server: TlsOptions;
  /**
   * For connections to peers' client ports, which then serve TLS too: this node's certificate as its
   * client certificate (peers with a `ca_file` ask for one), and the peer's certificate checked against
   * the public roots, `ca_file` and this node's own certificate (so a cluster sharing one self-signed
   * certificate needs nothing more).
   */
  readonly client: ConnectionOptions;
}

/** Reads `[network.tls]` files; undefined when TLS is off. A file that cannot be read is a ConfigError. */
export function loadTls(config: TlsConfig): TlsSetup | undefined {
  if (!config.enabled) return undefined;
  const cert = readPem(config.cert_file, 'network.tls.cert_file');
  const key = readPem(config.key_file, 'network.tls.key_file');
  const ca = config.ca_file === '' ? undefined : readPem(config.ca_file, 'network.tls.ca_file');
  try {
    createSecureContext({ cert, key, ...(ca === undefined ? {} : { ca }) });
  } catch (err) {
    throw new ConfigError(`network.tls: ${(err as Error).message} (cert_file ${config.cert_file}, key_file ${config.key_file})`, { cause: err });
  }
  return {
    server: {
      cert,
      key,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      minVersion: 'TLSv1.2',
      ...(ca === undefined ? {} : { ca, requestCert: true, rejectUnauthorized: true }),
    },
    client: {
      cert,
      key,
      ca: [...rootCertificates, cert.toString('utf8'), ...(ca === undefined ? [] : [ca.toString('utf8')])],
      minVersion: 'TLSv1.2',
    },
  };
}

/** Reads a PEM file named by `setting`, explaining a failure in terms of the setting. */
export function readPem(path: string, setting: string): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(path);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new ConfigError(`${setting}: cannot read ${path}: ${why}`, { cause: err });
  }
  if (!pem.includes('-----BEGIN ')) throw new ConfigError(`${setting}: ${path} is not a PEM file`);
  return pem;
}
