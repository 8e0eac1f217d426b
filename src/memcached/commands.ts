import { keyProblem, type Limits } from '../rules.js';
import type { Output } from '../protocol/output.js';
import { casUnique, expire, hasExpired, increment, readItem, type Store, truncate, writeItem } from '../store/index.js';
import { toUnsigned64 } from './numbers.js';
import { TOO_LARGE, type McRequest } from './parser.js';

/*
 * What memcached's text commands do to the replicated store (issue #12): the same records, versions and
 * replication as MerkleKV's own protocol, so a value written through either listener reads through the
 * other. Replies are memcached 1.6's. A request whose key breaks MerkleKV's key rules (not UTF-8, over
 * max_key_bytes) is refused as memcached refuses a bad key, with CLIENT_ERROR bad command line format.
 */

/** Seconds beyond which memcached reads an exptime as a Unix time rather than an interval. */
const RELATIVE_LIMIT_SECONDS = 30 * 24 * 3600;
const U64 = 1n << 64n;
/** MerkleKV counters are signed 64-bit: beyond, incr writes plain text. */
const I64_LIMIT = 1n << 63n;

/** memcached's own counters, for its `stats` (named as memcached names them); `stats reset` zeroes them. */
export class McCounters {
  commands = 0;
  errors = 0;
  cmdGet = 0;
  cmdSet = 0;
  cmdTouch = 0;
  cmdFlush = 0;
  getHits = 0;
  getMisses = 0;
  /** Misses that found an item whose expiry had passed. */
  getExpired = 0;
  deleteHits = 0;
  deleteMisses = 0;
  incrHits = 0;
  incrMisses = 0;
  decrHits = 0;
  decrMisses = 0;
  casHits = 0;
  casMisses = 0;
  casBadval = 0;
  touchHits = 0;
  touchMisses = 0;
  storeTooLarge = 0;
  /** Stores refused by `[storage] memory_limit_mb` (memcached: out of memory). */
  storeNoMemory = 0;
  /** Items written through this listener since start (or `stats reset`): stores that answered STORED, incr/decr. */
  totalItems = 0;

  reset(): void {
    Object.assign(this, new McCounters());
  }
}

/** What the memcached listener needs beside the store. */
export interface McContext {
  readonly counters: McCounters;
  readonly store: Store;
  readonly limits: Limits;
  readonly version: string;
  /** `flush_all <delay>`: runs `flush` after `delayMs` (0: now). */
  readonly schedule: (delayMs: number, flush: () => void) => void;
  /** `stats [group]`: the `STAT <name> <value>` pairs the listener reports; undefined for a group it does not know. */
  readonly stats: (group: string | undefined) => [string, string | number][] | undefined;
}

/**
 * The absolute expiry (ms since the Unix epoch) of a memcached exptime at `now`: 0 none; up to 30 days
 * an interval in seconds; beyond, a Unix time; negative, already expired.
 */
export function expiryOf(exptime: number, now: number): number {
  if (exptime === 0) return 0;
  if (exptime < 0) return Math.max(1, now - 1);
  if (exptime <= RELATIVE_LIMIT_SECONDS) return now + exptime * 1000;
  // An absolute time already past is expired at once, as memcached has it.
  const at = exptime * 1000;
  return at <= now ? Math.max(1, now - 1) : at;
}

/** Runs one request, writing its reply (none with noreply) to `out`. Returns 'close' for quit. */
export function execute(req: McRequest, ctx: McContext, out: Output): 'close' | undefined {
  const { store } = ctx;
  const reply = (text: string, noreply: boolean): void => answer(out, text, noreply);
  switch (req.kind) {
    case 'error':
      if (req.reply === TOO_LARGE) ctx.counters.storeTooLarge++;
      reply(req.reply, req.noreply);
      return undefined;
    case 'close':
      if (req.reply !== undefined) out.line(req.reply);
      return 'close';
    case 'quit':
      return 'close';
    case 'version':
      out.line(`VERSION ${ctx.version}`);
      return undefined;
    case 'verbosity':
      reply('OK', req.noreply);
      return undefined;
    case 'stats': {
      if (req.args.length === 1 && req.args[0] === 'reset') {
        ctx.counters.reset();
        out.line('RESET');
        return undefined;
      }
      const pairs = req.args.length > 1 ? undefined : ctx.stats(req.args[0]);
      if (pairs === undefined) {
        out.line('ERROR');
        return undefined;
      }
      for (const [name, value] of pairs) out.line(`STAT ${name} ${value}`);
      out.line('END');
      return undefined;
    }
    case 'retrieve':
      retrieve(req.keys, req.command, req.exptime, ctx, out);
      return undefined;
    case 'flush_all':
      ctx.counters.cmdFlush++;
      ctx.schedule(req.delay * 1000, () => void truncate(store));
      reply('OK', req.noreply);
      return undefined;
    case 'store':
    case 'delete':
    case 'touch':
    case 'arith':
      if (req.kind === 'store') ctx.counters.cmdSet++;
      if (req.kind === 'touch') ctx.counters.cmdTouch++;
      if (badKey(req.key, ctx.limits)) reply('CLIENT_ERROR bad command line format', req.noreply);
      else keyed(req, ctx, out);
      return undefined;
  }
}

/** A reply line, unless the request said noreply. */
function answer(out: Output, text: string, noreply: boolean): void {
  if (!noreply) out.line(text);
}

/** The commands on one key, whose key is known good. */
function keyed(req: Extract<McRequest, { key: Buffer }>, ctx: McContext, out: Output): void {
  const { store, counters } = ctx;
  const reply = (text: string): void => answer(out, text, req.noreply);
  switch (req.kind) {
    case 'store': {
      const { text, after } = storeItem(req, store);
      if (req.command === 'cas') count(counters, text === 'STORED' ? 'casHits' : text === 'EXISTS' ? 'casBadval' : 'casMisses');
      if (text === 'STORED') counters.totalItems++;
      reply(text);
      out.dependOn(after);
      return;
    }
    case 'delete': {
      const held = readItem(store, req.key) !== undefined;
      count(counters, held ? 'deleteHits' : 'deleteMisses');
      // A tombstone either way, as DEL writes (DESIGN.md section 4).
      reply(held ? 'DELETED' : 'NOT_FOUND');
      out.dependOn(store.delete(req.key));
      return;
    }
    case 'touch': {
      const after = readItem(store, req.key) === undefined ? undefined : expire(store, req.key, expiryOf(req.exptime, Date.now()));
      count(counters, after === undefined ? 'touchMisses' : 'touchHits');
      reply(after === undefined ? 'NOT_FOUND' : 'TOUCHED');
      if (after !== undefined) out.dependOn(after);
      return;
    }
    case 'arith': {
      const { text, after } = arith(req.command, req.key, req.delta, store);
      if (text === 'NOT_FOUND') count(counters, req.command === 'incr' ? 'incrMisses' : 'decrMisses');
      else if (!text.startsWith('CLIENT_ERROR')) {
        count(counters, req.command === 'incr' ? 'incrHits' : 'decrHits');
        counters.totalItems++;
      }
      reply(text);
      out.dependOn(after);
      return;
    }
  }
}

type HitCounter = { [K in keyof McCounters]: McCounters[K] extends number ? K : never }[keyof McCounters];

function count(counters: McCounters, which: HitCounter): void {
  counters[which]++;
}

function badKey(key: Buffer, limits: Limits): boolean {
  return keyProblem(key, limits.maxKeyBytes) !== undefined;
}

/** get, gets, gat, gats: `VALUE <key> <flags> <bytes> [<cas>]` and the data for each live key, then END. */
function retrieve(keys: Buffer[], command: 'get' | 'gets' | 'gat' | 'gats', exptime: number, ctx: McContext, out: Output): void {
  const withCas = command === 'gets' || command === 'gats';
  const touching = command === 'gat' || command === 'gats';
  const at = touching ? expiryOf(exptime, Date.now()) : 0;
  let after: Promise<void> | null = null;
  for (const key of keys) {
    ctx.counters.cmdGet++;
    if (touching) ctx.counters.cmdTouch++;
    const bad = badKey(key, ctx.limits);
    let item = bad ? undefined : readItem(ctx.store, key);
    if (item === undefined) {
      ctx.counters.getMisses++;
      if (!bad && hasExpired(ctx.store, key)) ctx.counters.getExpired++;
      if (touching) ctx.counters.touchMisses++;
      continue;
    }
    ctx.counters.getHits++;
    if (touching) ctx.counters.touchHits++;
    if (touching) {
      after = expire(ctx.store, key, at) ?? after;
      item = readItem(ctx.store, key);
      if (item === undefined) continue;
    } else {
      after = ctx.store.read(key).after ?? after;
    }
    out.bytesLine('VALUE ', key, ` ${item.flags} ${item.value.length}${withCas ? ` ${casUnique(item)}` : ''}`);
    out.bytesLine('', item.value);
  }
  out.line('END');
  out.dependOn(after);
}

/** set, add, replace, append, prepend, cas. */
function storeItem(req: Extract<McRequest, { kind: 'store' }>, store: Store): { text: string; after: Promise<void> | null } {
  // The hot path: a set of a value without flags or expiry is what SET writes.
  if (req.command === 'set' && req.flags === 0 && req.exptime === 0) return { text: 'STORED', after: store.set(req.key, req.data) };
  const current = req.command === 'set' ? undefined : readItem(store, req.key);
  let value = req.data;
  let flags = req.flags;
  let at = expiryOf(req.exptime, Date.now());
  switch (req.command) {
    case 'add':
      // A key memcached cannot see (a set) still exists: only set and delete replace it.
      if (current !== undefined || store.readValue(req.key).value === 'set') return { text: 'NOT_STORED', after: null };
      break;
    case 'replace':
      if (current === undefined) return { text: 'NOT_STORED', after: null };
      break;
    case 'append':
    case 'prepend':
      if (current === undefined) return { text: 'NOT_STORED', after: null };
      // The item keeps its flags and expiry; the command's are ignored, as memcached does.
      value = req.command === 'append' ? Buffer.concat([current.value, req.data]) : Buffer.concat([req.data, current.value]);
      flags = current.flags;
      at = current.expiresAt;
      break;
    case 'cas':
      if (current === undefined) return { text: 'NOT_FOUND', after: null };
      if (casUnique(current) !== req.cas) return { text: 'EXISTS', after: null };
      break;
    case 'set':
      break;
  }
  return { text: 'STORED', after: writeItem(store, req.key, { value, flags, expiresAt: at }) };
}

/**
 * incr/decr: the value must be a decimal number below 2^64 (memcached's reading of it, numbers.ts); incr wraps around, decr stops at 0 (as
 * memcached does). The new value is written as text, with the item's flags and expiry; a MerkleKV
 * counter (INC) takes the change as an increment, so it still merges with other nodes' increments.
 */
function arith(command: 'incr' | 'decr', key: Buffer, delta: bigint, store: Store): { text: string; after: Promise<void> | null } {
  const item = readItem(store, key);
  if (item === undefined) return { text: 'NOT_FOUND', after: null };
  // Read as memcached reads it (white space around the number is allowed); an empty value is no number.
  const current = item.value.length === 0 ? undefined : toUnsigned64(item.value);
  if (current === undefined) return { text: 'CLIENT_ERROR cannot increment or decrement non-numeric value', after: null };
  const next = command === 'incr' ? (current + delta) % U64 : current > delta ? current - delta : 0n;
  const { flags, expiresAt, counter } = item;
  if (counter && next < I64_LIMIT) {
    const r = increment(store, key, next - current);
    if (typeof r !== 'string') return { text: String(r.value), after: r.after };
  }
  return { text: next.toString(), after: writeItem(store, key, { value: Buffer.from(next.toString()), flags, expiresAt }) };
}
