import type { Logger } from 'pino';
import { ProtocolError, StorageError } from '../errors.js';
import type { Output } from './output.js';

/*
 * What a connection (server/) and the protocols it speaks (commands/, memcached/) agree on. It lives
 * below both, so neither imports the other to reach it.
 */

/**
 * What the connection does after a command: nothing special; close once the reply is sent; or
 * 'barrier': run nothing after it until its reply is sent (SYNC: a pipelined GET after it must see
 * what the exchange brought).
 */
export type Outcome = undefined | 'close' | 'barrier';

/**
 * A wire protocol as a connection speaks it (server/connection.ts): it takes the client's bytes and
 * runs the requests they complete, one at a time, writing each reply to the batch's Output. The
 * connection does the rest, the same for every protocol: batching, commit waits, reply order,
 * backpressure, idle and drain timeouts. MerkleKV's line protocol is one (commands/dialect.ts),
 * memcached's text protocol another (memcached/dialect.ts).
 */
export interface Dialect {
  /** Bytes from the client. */
  push(chunk: Buffer): void;
  /**
   * Runs the next complete request (after `out.begin()`) and says what the connection does next;
   * 'none' when no complete request is waiting. `ended`: the client will send nothing more.
   */
  runNext(out: Output, ended: boolean): Outcome | 'none';
  /** The reply of a request whose write failed after it ran (the log or LMDB could not take it). */
  failure(err: unknown): Buffer;
  /** The last command's name, for CLIENT LIST (`NULL` before the first). */
  readonly lastCommand: string;
}

/** What a client may be told about an error; anything unexpected is logged and called an internal error. */
export function errorMessage(err: unknown, logger: Logger): string {
  if (err instanceof ProtocolError) return err.message;
  // The store's own errors (a log the disk cannot take) say what went wrong; they are logged where raised.
  if (err instanceof StorageError) return err.message;
  logger.error({ err }, 'request failed');
  return 'internal error';
}
