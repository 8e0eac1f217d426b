import { integer, key, keys, line, value, word, type Value } from './arguments.js';
import { ClientCore, type RequestOptions } from './core.js';
import { ArgumentError } from './errors.js';
import { authLine, credentialsOf, type Credentials } from './options.js';
import * as parse from './parse.js';

/** A section of STATS (README "Commands"). */
export type StatsSection = 'general' | 'storage' | 'replication' | 'antientropy' | 'peers' | 'all';

/** SYNC's switches, and its timeout: none by default, the node bounds an exchange itself. */
export interface SyncOptions extends RequestOptions {
  /** Copy every record the peer holds first (fills a new or wiped node). */
  readonly full?: boolean;
  /** Fail unless the Merkle roots are equal after the exchange. */
  readonly verify?: boolean;
}

/**
 * A MerkleKV client: one method per command of the line protocol (README "Commands"), each resolving
 * with its reply as a value. A method writes its request at once, so calls made without awaiting the
 * previous ones are pipelined on one connection; replies come back in request order.
 *
 * Rejections: ReplyError (the node answered `ERROR <message>`), ConnectionError, TimeoutError,
 * ArgumentError (a key or value the protocol cannot carry; nothing is sent): all MerkleKVError.
 * Values are UTF-8 text on one line: no CR or LF, no trailing space or tab.
 */
export class MerkleKVClient extends ClientCore {
  /** GET: the value, or null if the key is absent (or expired). */
  get(k: string): Promise<string | null> {
    return this.send(() => `GET ${key(k)}`, parse.valueOrNull);
  }

  /** SET: resolves once the write is as durable as the node's `[storage] fsync` says. */
  set(k: string, v: Value): Promise<void> {
    return this.send(() => `SET ${key(k)} ${value(v)}`, parse.ok);
  }

  /** SETEX: a value that expires after `seconds` (1 or more). */
  setex(k: string, seconds: number, v: Value): Promise<void> {
    return this.send(() => `SETEX ${key(k)} ${integer(seconds, 'seconds')} ${value(v)}`, parse.ok);
  }

  /** EXPIRE: false if the key is absent; 0 or less seconds deletes it. */
  expire(k: string, seconds: number): Promise<boolean> {
    return this.send(() => `EXPIRE ${key(k)} ${integer(seconds, 'seconds')}`, parse.okOrNotFound);
  }

  /** PERSIST: removes the expiry; false if the key is absent. */
  persist(k: string): Promise<boolean> {
    return this.send(() => `PERSIST ${key(k)}`, parse.okOrNotFound);
  }

  /** TTL: seconds left (rounded), -1 if the key does not expire, null if it is absent. */
  ttl(k: string): Promise<number | null> {
    return this.send(() => `TTL ${key(k)}`, parse.ttl);
  }

  /** DEL: whether the key was there (a tombstone is written either way). */
  del(k: string): Promise<boolean> {
    return this.send(() => `DEL ${key(k)}`, parse.deleted);
  }

  /** INC: the counter's new value (a missing key starts at 0). Exact up to Number.MAX_SAFE_INTEGER. */
  incr(k: string, by: number | bigint = 1): Promise<number> {
    return this.send(() => `INC ${key(k)} ${integer(by, 'the amount')}`, parse.counter);
  }

  /** DEC: the counter's new value (a missing key starts at 0). */
  decr(k: string, by: number | bigint = 1): Promise<number> {
    return this.send(() => `DEC ${key(k)} ${integer(by, 'the amount')}`, parse.counter);
  }

  /** APPEND: the new value (a missing key is created). */
  append(k: string, v: Value): Promise<string> {
    return this.send(() => `APPEND ${key(k)} ${value(v)}`, parse.value);
  }

  /** PREPEND: the new value (a missing key is created). */
  prepend(k: string, v: Value): Promise<string> {
    return this.send(() => `PREPEND ${key(k)} ${value(v)}`, parse.value);
  }

  /** SADD: how many of the members were not in the set. Members follow the key rules. */
  sadd(k: string, ...members: string[]): Promise<number> {
    return this.send(() => `SADD ${key(k)} ${keys(members, 'member')}`, parse.count('SADD'));
  }

  /** SREM: how many of the members were in the set. */
  srem(k: string, ...members: string[]): Promise<number> {
    return this.send(() => `SREM ${key(k)} ${keys(members, 'member')}`, parse.count('SREM'));
  }

  /** SMEMBERS: the members in byte order ([] for a missing key). */
  smembers(k: string): Promise<string[]> {
    return this.send(() => `SMEMBERS ${key(k)}`, parse.list('MEMBERS'));
  }

  /** SISMEMBER. */
  sismember(k: string, member: string): Promise<boolean> {
    return this.send(() => `SISMEMBER ${key(k)} ${key(member)}`, parse.flag);
  }

  /** SCARD: the set's size (0 for a missing key). */
  scard(k: string): Promise<number> {
    return this.send(() => `SCARD ${key(k)}`, parse.count('SCARD'));
  }

  /**
   * MGET: one entry per key, in order, null where the key is absent. A value that is the text
   * `NOT_FOUND` reads as null: the protocol does not tell them apart.
   */
  mget(...ks: string[]): Promise<(string | null)[]> {
    return this.send(() => `MGET ${keys(ks)}`, parse.mget(ks));
  }

  /** MSET: every pair written. MSET values are single words (no spaces): use set() for others. */
  mset(pairs: Readonly<Record<string, Value>> | Iterable<readonly [string, Value]>): Promise<void> {
    return this.send(() => {
      const entries = Symbol.iterator in pairs ? [...pairs] : Object.entries(pairs);
      if (entries.length === 0) throw new ArgumentError('MSET needs at least one pair');
      return `MSET ${entries.map(([k, v]) => `${key(k)} ${word(v)}`).join(' ')}`;
    }, parse.ok);
  }

  /** EXISTS: how many of the keys are present (a key named twice counts twice). */
  exists(...ks: string[]): Promise<number> {
    return this.send(() => `EXISTS ${keys(ks)}`, parse.count('EXISTS'));
  }

  /** SCAN: the live keys, in byte order, under `prefix` if given. */
  scan(prefix?: string): Promise<string[]> {
    return this.send(() => (prefix === undefined ? 'SCAN' : `SCAN ${key(prefix)}`), parse.list('KEYS'));
  }

  /** DBSIZE: the number of live keys. */
  dbsize(): Promise<number> {
    return this.send('DBSIZE', parse.count('DBSIZE'));
  }

  /** PING: `PONG`, or the message given. Answered before AUTH too. */
  ping(message?: string): Promise<string> {
    return this.send(() => (message === undefined ? 'PING' : `PING ${nonEmpty(message)}`), parse.pong);
  }

  /** ECHO: the message. */
  echo(message: string): Promise<string> {
    return this.send(() => `ECHO ${nonEmpty(message)}`, parse.text('ECHO'));
  }

  /** STATS: a section's `name:value` lines as a record (values as sent, numbers as text). */
  stats(section: StatsSection = 'general'): Promise<Record<string, string>> {
    return this.send(() => `STATS ${section}`, parse.block);
  }

  /** INFO: the reference project's layout, as a record. */
  info(): Promise<Record<string, string>> {
    return this.send('INFO', parse.block);
  }

  /** MEMORY: the node's resident memory in bytes. */
  memory(): Promise<number> {
    return this.send('MEMORY', parse.count('MEMORY'));
  }

  /** CLIENT LIST: the node's connections (admin). */
  clientList(): Promise<parse.ClientInfo[]> {
    return this.send('CLIENT LIST', parse.clients);
  }

  /** REPLICATE enable|disable (admin); `status`: whether the node replicates. */
  replicate(action: 'enable' | 'disable'): Promise<void>;
  replicate(action: 'status'): Promise<boolean>;
  replicate(action: 'enable' | 'disable' | 'status'): Promise<void | boolean> {
    if (action === 'status') return this.send('REPLICATE status', parse.replication);
    return this.send(() => {
      if (action !== 'enable' && action !== 'disable') throw new ArgumentError(`REPLICATE takes enable, disable or status, got ${String(action)}`);
      return `REPLICATE ${action}`;
    }, parse.ok);
  }

  /** VERSION: the node's version. */
  version(): Promise<string> {
    return this.send('VERSION', parse.text('VERSION'));
  }

  /** TRUNCATE: deletes every key (as tombstones, replicated). Admin. */
  truncate(): Promise<void> {
    return this.send('TRUNCATE', parse.ok);
  }

  /** FLUSHDB: TRUNCATE's other name. */
  flushdb(): Promise<void> {
    return this.send('FLUSHDB', parse.ok);
  }

  /**
   * HASH: the Merkle root (32 hex digits); with a prefix, the SHA-256 digest of the content under it
   * (64 hex digits), equal on replicas holding the same content.
   */
  hash(prefix?: string): Promise<string> {
    return this.send(() => (prefix === undefined ? 'HASH' : `HASH ${key(prefix)}`), parse.hash);
  }

  /**
   * SYNC: one anti-entropy exchange with the node at `host:port` (its client port). Admin. Requests made
   * after it on this client wait for it on the node (and may time out, which resets the connection and
   * fails the SYNC): give long exchanges a client of their own.
   */
  sync(host: string, port: number, options: SyncOptions = {}): Promise<void> {
    const flags = `${options.full === true ? ' --full' : ''}${options.verify === true ? ' --verify' : ''}`;
    return this.send(
      () => {
        if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ArgumentError(`port must be an integer in 1..65535, got ${String(port)}`);
        return `SYNC ${key(host)} ${port}${flags}`;
      },
      parse.ok,
      { timeout: options.timeout ?? 0 },
    );
  }

  /**
   * BACKUP: a consistent copy of the node's data in a new directory, taken while writes go on. Admin.
   * Resolves with the directory (on the node's machine): `path`, from the node's working directory, or
   * without one a new directory under its `[storage] backup_path`. No timeout unless given one.
   */
  backup(path?: string, options: { timeout?: number } = {}): Promise<string> {
    return this.send(() => (path === undefined ? 'BACKUP' : `BACKUP ${key(path)}`), parse.text('OK'), { timeout: options.timeout ?? 0 });
  }

  /**
   * AUTH `password` (`[security] password`) or AUTH `user` `password` (`[security.users]`). Once it
   * succeeds, reconnections authenticate this way too. A wrong password: ReplyError `invalid password`.
   */
  auth(password: string): Promise<void>;
  auth(user: string, password: string): Promise<void>;
  auth(first: string, second?: string): Promise<void> {
    let credentials: Credentials | undefined;
    const sent = this.send(() => {
      credentials = second === undefined ? credentialsOf(undefined, first) : credentialsOf(first, second);
      if (credentials === undefined) throw new ArgumentError('AUTH needs a password');
      return authLine(credentials);
    }, parse.ok);
    return sent.then(() => this.authenticated(credentials as Credentials));
  }

  /** QUIT: close(). */
  quit(): Promise<void> {
    return this.close();
  }
}

function nonEmpty(message: string): string {
  if (typeof message !== 'string' || message === '') throw new ArgumentError('a message must be a non-empty string');
  return line(message, 'a message');
}
