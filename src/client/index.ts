import { MerkleKVClient } from './client.js';
import type { ClientOptions } from './options.js';

/*
 * The Node.js client of MerkleKV: `import { createClient } from 'merkle-kv'`. This file is the folder's
 * one face; everything it does not export is internal.
 */

/**
 * A client for one node. It connects when told to:
 *
 * ```ts
 * const client = createClient({ host: '127.0.0.1', port: 7878 });
 * await client.connect();
 * await client.set('user:1', 'alice');
 * await client.close();
 * ```
 */
export function createClient(options: ClientOptions = {}): MerkleKVClient {
  return new MerkleKVClient(options);
}

export { MerkleKVClient, type StatsSection, type SyncOptions } from './client.js';
export type { ClientEvents, ClientStatus, RequestOptions } from './core.js';
export { ArgumentError, ClientErrorCode, ConnectionError, MerkleKVError, ReplyError, TimeoutError, UnexpectedReplyError } from './errors.js';
export type { ClientOptions, ReconnectOptions } from './options.js';
export type { ClientInfo } from './parse.js';
export type { Value } from './arguments.js';
