import type { ConnectionOptions as TlsOptions } from 'node:tls';
import { isWord } from '../rules.js';
import { ArgumentError } from './errors.js';

/** How the client makes its connection again after losing it: exponential backoff. */
export interface ReconnectOptions {
  /** Wait before the first attempt, in ms (default 100); each failed attempt doubles it. */
  readonly initialDelay?: number;
  /** The longest wait between attempts, in ms (default 5000). */
  readonly maxDelay?: number;
}

/** What `createClient` takes; every field has a default. */
export interface ClientOptions {
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** The node's client port, default 7878. */
  readonly port?: number;
  /**
   * Talk TLS (`[network.tls]` on the node): `true` trusts the system's roots; an object is handed to
   * `tls.connect`, e.g. `{ ca }` for a private CA, `{ ca, cert, key }` when the node asks for a client
   * certificate.
   */
  readonly tls?: boolean | TlsOptions;
  /** With `password`: `AUTH <user> <password>` (`[security.users]`). */
  readonly user?: string;
  /** Sent as `AUTH [user] <password>` on every connection, before any request. */
  readonly password?: string;
  /** Per request, in ms, from the call until its reply (default 5000; 0: none). */
  readonly timeout?: number;
  /** For each connection attempt, TLS handshake included, in ms (default 10000; 0: none). */
  readonly connectTimeout?: number;
  /** Backoff between reconnection attempts, or `false` to stay disconnected once the connection is lost. */
  readonly reconnect?: false | ReconnectOptions;
}

/** The options with their defaults filled in and checked. */
export interface Settings {
  readonly host: string;
  readonly port: number;
  readonly tls: TlsOptions | undefined;
  readonly credentials: Credentials | undefined;
  readonly timeout: number;
  readonly connectTimeout: number;
  readonly reconnect: { readonly initialDelay: number; readonly maxDelay: number } | undefined;
}

export interface Credentials {
  readonly user: string | undefined;
  readonly password: string;
}

export const DEFAULT_PORT = 7878;

/** Fills in the defaults; an `ArgumentError` for a value that could never work. */
export function settingsOf(options: ClientOptions = {}): Settings {
  const port = options.port ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ArgumentError(`port must be an integer in 1..65535, got ${String(port)}`);
  const reconnect = options.reconnect === false ? undefined : options.reconnect;
  const initialDelay = milliseconds('reconnect.initialDelay', reconnect?.initialDelay, 100);
  const maxDelay = milliseconds('reconnect.maxDelay', reconnect?.maxDelay, 5000);
  return {
    host: options.host ?? '127.0.0.1',
    port,
    tls: options.tls === true ? {} : options.tls === false ? undefined : options.tls,
    credentials: credentialsOf(options.user, options.password),
    timeout: milliseconds('timeout', options.timeout, 5000),
    connectTimeout: milliseconds('connectTimeout', options.connectTimeout, 10_000),
    reconnect: options.reconnect === false ? undefined : { initialDelay, maxDelay: Math.max(initialDelay, maxDelay) },
  };
}

/** Checks AUTH's words: passwords and user names are single words (README "Security"). */
export function credentialsOf(user: string | undefined, password: string | undefined): Credentials | undefined {
  if (password === undefined) {
    if (user !== undefined) throw new ArgumentError('user needs a password');
    return undefined;
  }
  if (!isWord(password)) throw new ArgumentError('password must be one word: no spaces or control characters');
  if (user !== undefined && !isWord(user)) throw new ArgumentError('user must be one word: no spaces or control characters');
  return { user, password };
}

/** The command line that authenticates with `c`. */
export function authLine(c: Credentials): string {
  return c.user === undefined ? `AUTH ${c.password}` : `AUTH ${c.user} ${c.password}`;
}

function milliseconds(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  // setTimeout fires at once past 2^31 - 1 ms.
  if (!Number.isFinite(value) || value < 0 || value > 2_147_483_647) throw new ArgumentError(`${name} must be 0..2147483647 ms, got ${String(value)}`);
  return value;
}
