/*
 * The memcached text protocol's requests (memcached 1.6 `doc/protocol.txt`), parsed from a byte stream
 * that knows no socket: `push(chunk)` returns the requests the bytes completed. A storage command's
 * data block is read by its length, not by line, so values may hold any bytes, CR and LF included.
 *
 * Where memcached answers a malformed request with an error and goes on, so does this parser: it
 * yields an `error` request carrying the reply (ERROR, CLIENT_ERROR ..., SERVER_ERROR ...), and it
 * skips a data block it will not store exactly as memcached does (the too-large value is read and
 * dropped, so the connection stays in step). Only a line too long to be a command ends the connection.
 *
 * Keys and data blocks in the requests are views of the bytes pushed, not copies (0.8 to 0.5 µs a set
 * request): a request keeps its chunk alive until it is dropped, which is right after it runs.
 */

import { toSigned32, toUnsigned32, toUnsigned64 } from './numbers.js';

export const STORE_COMMANDS = ['set', 'add', 'replace', 'append', 'prepend', 'cas'] as const;
export type StoreCommand = (typeof STORE_COMMANDS)[number];
export const RETRIEVE_COMMANDS = ['get', 'gets', 'gat', 'gats'] as const;
export type RetrieveCommand = (typeof RETRIEVE_COMMANDS)[number];

export type McRequest =
  | {
      readonly kind: 'store';
      readonly command: StoreCommand;
      readonly key: Buffer;
      /** Opaque to the server, 32 bits. */
      readonly flags: number;
      /** As sent: 0 none, up to 30 days relative seconds, beyond an absolute Unix time, negative expired. */
      readonly exptime: number;
      readonly data: Buffer;
      /** `cas` only: the unique the client read. */
      readonly cas: bigint;
      readonly noreply: boolean;
    }
  | { readonly kind: 'retrieve'; readonly command: RetrieveCommand; readonly keys: Buffer[]; readonly exptime: number }
  | { readonly kind: 'delete'; readonly key: Buffer; readonly noreply: boolean }
  | { readonly kind: 'arith'; readonly command: 'incr' | 'decr'; readonly key: Buffer; readonly delta: bigint; readonly noreply: boolean }
  | { readonly kind: 'touch'; readonly key: Buffer; readonly exptime: number; readonly noreply: boolean }
  | { readonly kind: 'flush_all'; readonly delay: number; readonly noreply: boolean }
  | { readonly kind: 'version' }
  | { readonly kind: 'verbosity'; readonly noreply: boolean }
  | { readonly kind: 'stats'; readonly args: string[] }
  | { readonly kind: 'quit' }
  /** Answer `reply` (unless `noreply`), then go on with the next request. */
  | { readonly kind: 'error'; readonly reply: string; readonly noreply: boolean }
  /** The input cannot be framed (a line too long): answer `reply` if any, then close. */
  | { readonly kind: 'close'; readonly reply: string | undefined };

export interface McLimits {
  /** memcached's KEY_MAX_LENGTH. */
  readonly maxKeyBytes: number;
  /** Larger data blocks get SERVER_ERROR object too large for cache (and are skipped). */
  readonly maxValueBytes: number;
  /** memcached's item_size_max (-I): an item's data, key and header (itemSize) above it are refused as too large. */
  readonly itemSizeMax: number;
  /** A command line longer than this without a newline closes the connection (retrievals excepted). */
  readonly maxLineBytes: number;
  /** The longest retrieval line (many keys), which memcached reads however long it is. */
  readonly maxRetrievalLineBytes: number;
}

export const MEMCACHED_LIMITS: McLimits = {
  maxKeyBytes: 250,
  maxValueBytes: 1024 * 1024,
  itemSizeMax: 1024 * 1024,
  maxLineBytes: 2048,
  maxRetrievalLineBytes: 1024 * 1024,
};

/**
 * What an item takes in memcached 1.6 (64-bit, CAS on), which its item_size_max bounds: a 48-byte header,
 * the key and its NUL, 4 bytes of client flags unless they are 0, the data and its CRLF, the CAS unique.
 * Measured against memcached 1.6.18 at -I 1m: a 1-byte key takes data up to 1,048,516 bytes with flags 0,
 * 1,048,512 with flags.
 */
export function itemSize(keyBytes: number, flags: number, dataBytes: number): number {
  return 48 + keyBytes + 1 + (flags === 0 ? 0 : 4) + dataBytes + 2 + 8;
}

const ERROR = 'ERROR';
const BAD_FORMAT = 'CLIENT_ERROR bad command line format';
const BAD_CHUNK = 'CLIENT_ERROR bad data chunk';
/** The reply to a data block over the size limit (counted as memcached's store_too_large). */
export const TOO_LARGE = 'SERVER_ERROR object too large for cache';
const BAD_DELTA = 'CLIENT_ERROR invalid numeric delta argument';
const BAD_EXPTIME = 'CLIENT_ERROR invalid exptime argument';
const DELETE_USAGE = 'CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]';
const EMPTY = Buffer.alloc(0);
const LF = 0x0a;
const CR = 0x0d;

/** A storage command whose data block is being read. */
interface PendingStore {
  readonly command: StoreCommand;
  readonly key: Buffer;
  readonly flags: number;
  readonly exptime: number;
  readonly cas: bigint;
  readonly noreply: boolean;
  /** Data bytes plus the CRLF after them. */
  readonly need: number;
}

export class McParser {
  private buf: Buffer = Buffer.alloc(0);
  /** Chunks of a data block still short of its length: joined once, when it is complete. */
  private parts: Buffer[] | undefined;
  private partsLength = 0;
  private store: PendingStore | undefined;
  /** Bytes of a refused data block still to skip. */
  private swallow = 0;
  private closed = false;

  constructor(private readonly limits: McLimits = MEMCACHED_LIMITS) {}

  /** Feeds bytes; returns the requests they completed, in order. After a `close` request, nothing more. */
  push(chunk: Buffer): McRequest[] {
    const out: McRequest[] = [];
    if (this.closed) return out;
    if (this.parts !== undefined) {
      // A large value arrives in many chunks: gather them rather than copy what came so far each time.
      this.parts.push(chunk);
      this.partsLength += chunk.length;
      if (this.partsLength < (this.store?.need ?? 0)) return out;
      chunk = Buffer.concat(this.parts, this.partsLength);
      this.parts = undefined;
    }
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let pos = 0;
    for (;;) {
      if (this.swallow > 0) {
        const skip = Math.min(this.swallow, this.buf.length - pos);
        this.swallow -= skip;
        pos += skip;
        if (this.swallow > 0) break;
      }
      if (this.store !== undefined) {
        if (this.buf.length - pos < this.store.need) break;
        out.push(this.finishStore(this.store, this.buf.subarray(pos, pos + this.store.need)));
        pos += this.store.need;
        this.store = undefined;
        continue;
      }
      const nl = this.buf.indexOf(LF, pos);
      if (nl === -1) {
        if (this.lineTooLong(this.buf.subarray(pos))) {
          out.push({ kind: 'close', reply: undefined });
          this.closed = true;
          pos = this.buf.length;
        }
        break;
      }
      const end = nl > pos && this.buf[nl - 1] === CR ? nl - 1 : nl;
      const line = this.buf.subarray(pos, end);
      pos = nl + 1;
      const req = this.line(line);
      if (req !== undefined) out.push(req);
    }
    // Keep only what is unread, copied so the chunks it came from can be freed.
    const rest = pos >= this.buf.length ? EMPTY : Buffer.from(this.buf.subarray(pos));
    if (this.store !== undefined && rest.length > 0 && rest.length < this.store.need) {
      this.parts = [rest];
      this.partsLength = rest.length;
      this.buf = EMPTY;
    } else {
      this.buf = rest;
    }
    return out;
  }

  /** A partial line past its limit: memcached closes such a connection (a get may run long, keys and all). */
  private lineTooLong(partial: Buffer): boolean {
    if (partial.length <= this.limits.maxLineBytes) return false;
    const retrieval = /^(get|gets|gat|gats) /.test(partial.toString('latin1', 0, 5));
    return !retrieval || partial.length > this.limits.maxRetrievalLineBytes;
  }

  private line(line: Buffer): McRequest | undefined {
    const args = tokenize(line);
    const command = args.shift();
    if (command === undefined) return { kind: 'error', reply: ERROR, noreply: false };
    const name = commandName(command);
    switch (name) {
      case 'set':
      case 'add':
      case 'replace':
      case 'append':
      case 'prepend':
      case 'cas':
        return this.storage(name, args);
      case 'get':
      case 'gets':
        if (args.length === 0) return { kind: 'error', reply: ERROR, noreply: false };
        return this.retrieval(name, args, 0);
      case 'gat':
      case 'gats': {
        // `gat <exptime>` with no key is an empty retrieval (END), as in memcached.
        if (args.length === 0) return { kind: 'error', reply: ERROR, noreply: false };
        const exptime = toSigned32(args[0] as Buffer);
        if (exptime === undefined) return { kind: 'error', reply: BAD_EXPTIME, noreply: false };
        return this.retrieval(name, args.slice(1), exptime);
      }
      case 'delete':
        return this.delete(args);
      case 'incr':
      case 'decr':
        return this.arith(name, args);
      case 'touch':
        return this.touch(args);
      case 'flush_all':
        return this.flushAll(args);
      // memcached 1.6 ignores what follows version and quit.
      case 'version':
        return { kind: 'version' };
      case 'verbosity': {
        // `verbosity <level> [noreply]`; a word after the level is ignored, as memcached does.
        const noreply = isNoreply(args[args.length - 1]);
        if (args.length === 0 || args.length > 2) return { kind: 'error', reply: ERROR, noreply: false };
        if (toUnsigned32(args[0] as Buffer) === undefined) return { kind: 'error', reply: BAD_FORMAT, noreply };
        return { kind: 'verbosity', noreply };
      }
      case 'stats':
        return { kind: 'stats', args: args.map((a) => a.toString('latin1')) };
      case 'quit':
        return { kind: 'quit' };
      default:
        return { kind: 'error', reply: ERROR, noreply: false };
    }
  }

  private storage(command: StoreCommand, args: Buffer[]): McRequest | undefined {
    // One word more is allowed; it means noreply only if it says so (memcached ignores any other).
    const want = command === 'cas' ? 5 : 4;
    if (args.length !== want && args.length !== want + 1) return { kind: 'error', reply: ERROR, noreply: false };
    const noreply = isNoreply(args[want]);
    const [key, flagsArg, exptimeArg, bytesArg, casArg] = args as [Buffer, Buffer, Buffer, Buffer, Buffer | undefined];
    if (key.length > this.limits.maxKeyBytes) return { kind: 'error', reply: BAD_FORMAT, noreply };
    const flags = toUnsigned32(flagsArg);
    const exptime = toSigned32(exptimeArg);
    const bytes = toSigned32(bytesArg);
    const cas = command === 'cas' ? toUnsigned64(casArg as Buffer) : 0n;
    if (flags === undefined || exptime === undefined || bytes === undefined || bytes < 0 || cas === undefined) {
      return { kind: 'error', reply: BAD_FORMAT, noreply };
    }
    if (bytes > this.limits.maxValueBytes || itemSize(key.length, flags, bytes) > this.limits.itemSizeMax) {
      // memcached reads the block and drops it, so what follows is still read as commands.
      this.swallow = bytes + 2;
      return { kind: 'error', reply: TOO_LARGE, noreply };
    }
    this.store = { command, key, flags, exptime, cas, noreply, need: bytes + 2 };
    return undefined;
  }

  private finishStore(s: PendingStore, block: Buffer): McRequest {
    if (block[block.length - 2] !== CR || block[block.length - 1] !== LF) return { kind: 'error', reply: BAD_CHUNK, noreply: s.noreply };
    const data = block.subarray(0, block.length - 2);
    return { kind: 'store', command: s.command, key: s.key, flags: s.flags, exptime: s.exptime, data, cas: s.cas, noreply: s.noreply };
  }

  private retrieval(command: RetrieveCommand, keys: Buffer[], exptime: number): McRequest {
    if (keys.some((k) => k.length > this.limits.maxKeyBytes)) return { kind: 'error', reply: BAD_FORMAT, noreply: false };
    return { kind: 'retrieve', command, keys, exptime };
  }

  /** `delete <key> [0] [noreply]`: an old client's hold time of 0 is accepted, any other is not (memcached 1.4+). */
  private delete(args: Buffer[]): McRequest {
    const [key, second, third] = args;
    if (key === undefined || args.length > 3) return { kind: 'error', reply: ERROR, noreply: false };
    const noreply = isNoreply(args[args.length - 1]);
    const zero = second !== undefined && second.length === 1 && second[0] === 0x30;
    const valid = second === undefined || (third === undefined ? zero || noreply : zero && noreply);
    if (!valid) return { kind: 'error', reply: DELETE_USAGE, noreply };
    if (key.length > this.limits.maxKeyBytes) return { kind: 'error', reply: BAD_FORMAT, noreply };
    return { kind: 'delete', key, noreply };
  }

  private arith(command: 'incr' | 'decr', args: Buffer[]): McRequest {
    if (args.length !== 2 && args.length !== 3) return { kind: 'error', reply: ERROR, noreply: false };
    const noreply = isNoreply(args[2]);
    const [key, deltaArg] = args as [Buffer, Buffer];
    if (key.length > this.limits.maxKeyBytes) return { kind: 'error', reply: BAD_FORMAT, noreply };
    const delta = toUnsigned64(deltaArg);
    if (delta === undefined) return { kind: 'error', reply: BAD_DELTA, noreply };
    return { kind: 'arith', command, key, delta, noreply };
  }

  private touch(args: Buffer[]): McRequest {
    if (args.length !== 2 && args.length !== 3) return { kind: 'error', reply: ERROR, noreply: false };
    const noreply = isNoreply(args[2]);
    const [key, exptimeArg] = args as [Buffer, Buffer];
    if (key.length > this.limits.maxKeyBytes) return { kind: 'error', reply: BAD_FORMAT, noreply };
    const exptime = toSigned32(exptimeArg);
    if (exptime === undefined) return { kind: 'error', reply: BAD_EXPTIME, noreply };
    return { kind: 'touch', key, exptime, noreply };
  }

  /** `flush_all [delay] [noreply]`: memcached reads only the first argument (a negative delay is now). */
  private flushAll(args: Buffer[]): McRequest {
    const noreply = isNoreply(args[args.length - 1]);
    const first = args[0];
    const delay = first === undefined || isNoreply(first) ? 0 : toSigned32(first);
    if (delay === undefined) return { kind: 'error', reply: BAD_EXPTIME, noreply };
    return { kind: 'flush_all', delay: Math.max(0, delay), noreply };
  }
}

/** The command word as a string; the common ones without a new string each time. */
function commandName(word: Buffer): string {
  const c = word[0];
  if (word.length === 3) {
    if (c === 0x73 && word[1] === 0x65 && word[2] === 0x74) return 'set';
    if (c === 0x67 && word[1] === 0x65 && word[2] === 0x74) return 'get';
  }
  return word.toString('latin1');
}

/** Words separated by spaces (memcached splits on ' ' only; empty words are dropped). */
function tokenize(line: Buffer): Buffer[] {
  const tokens: Buffer[] = [];
  let start = -1;
  for (let i = 0; i <= line.length; i++) {
    const space = i === line.length || line[i] === 0x20;
    if (space && start !== -1) {
      tokens.push(line.subarray(start, i));
      start = -1;
    } else if (!space && start === -1) {
      start = i;
    }
  }
  return tokens;
}

function isNoreply(token: Buffer | undefined): boolean {
  return token !== undefined && token.length === 7 && token.toString('latin1') === 'noreply';
}
