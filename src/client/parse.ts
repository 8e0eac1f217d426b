import { UnexpectedReplyError } from './errors.js';

/*
 * Replies turned into values (DESIGN.md section 2; README "Commands"). Each parser gets one complete
 * reply as its lines (ReplyReader framed it), never an `ERROR` one: the client turned that into a
 * ReplyError already. A reply of another shape is an UnexpectedReplyError.
 */

/** One reply's lines to a value. */
export type Parse<T> = (lines: readonly string[]) => T;

/** The lines as they came. */
export const raw: Parse<string[]> = (lines) => [...lines];

/** `OK`. */
export const ok: Parse<void> = (lines) => {
  if (first(lines) !== 'OK') throw unexpected(lines);
};

/** `OK` or `NOT_FOUND` (EXPIRE, PERSIST): whether the key was there. */
export const okOrNotFound: Parse<boolean> = (lines) => either(lines, 'OK', 'NOT_FOUND');

/** `DELETED` or `NOT_FOUND` (DEL): whether the key was there. */
export const deleted: Parse<boolean> = (lines) => either(lines, 'DELETED', 'NOT_FOUND');

/** `1` or `0` (SISMEMBER). */
export const flag: Parse<boolean> = (lines) => either(lines, '1', '0');

/** `VALUE <v>` or `NOT_FOUND` (GET). */
export const valueOrNull: Parse<string | null> = (lines) => (first(lines) === 'NOT_FOUND' ? null : value(lines));

/** `VALUE <v>` (APPEND, PREPEND). */
export const value: Parse<string> = (lines) => after(lines, 'VALUE ');

/** `VALUE <n>` (INC, DEC): a signed 64-bit integer, exact up to Number.MAX_SAFE_INTEGER. */
export const counter: Parse<number> = (lines) => integer(lines, after(lines, 'VALUE '));

/** `<WORD> <n>`: EXISTS, DBSIZE, SADD, SREM, SCARD, MEMORY. */
export function count(word: string): Parse<number> {
  const prefix = `${word} `;
  return (lines) => integer(lines, after(lines, prefix));
}

/** `TTL <seconds>` (`-1`: no expiry) or `NOT_FOUND`. */
export const ttl: Parse<number | null> = (lines) => (first(lines) === 'NOT_FOUND' ? null : integer(lines, after(lines, 'TTL ')));

/** `KEYS <n>` or `MEMBERS <n>`, then n lines: the lines. */
export function list(word: 'KEYS' | 'MEMBERS'): Parse<string[]> {
  const prefix = `${word} `;
  return (lines) => {
    const n = integer(lines, after(lines, prefix));
    if (lines.length !== n + 1) throw unexpected(lines);
    return lines.slice(1);
  };
}

/**
 * MGET: `VALUES <found>` then `<k> <v>` or `<k> NOT_FOUND` per key in request order, or `NOT_FOUND`
 * alone. A value that is the text `NOT_FOUND` reads as absent: the protocol cannot tell them apart.
 */
export function mget(keys: readonly string[]): Parse<(string | null)[]> {
  return (lines) => {
    if (first(lines) === 'NOT_FOUND' && lines.length === 1) return keys.map(() => null);
    integer(lines, after(lines, 'VALUES '));
    if (lines.length !== keys.length + 1) throw unexpected(lines);
    return keys.map((k, i) => {
      const line = lines[i + 1] as string;
      if (!line.startsWith(`${k} `)) throw unexpected(lines);
      const v = line.slice(k.length + 1);
      return v === 'NOT_FOUND' ? null : v;
    });
  };
}

/** `PONG` or `PONG <msg>`: the message, or `PONG`. */
export const pong: Parse<string> = (lines) => (first(lines) === 'PONG' ? 'PONG' : after(lines, 'PONG '));

/** `HASH <hex>` (the root) or `HASH <prefix> <hex>`: the hex digest. */
export const hash: Parse<string> = (lines) => {
  const rest = after(lines, 'HASH ');
  const digest = rest.slice(rest.lastIndexOf(' ') + 1);
  if (!/^[0-9a-f]+$/.test(digest)) throw unexpected(lines);
  return digest;
};

/** `<WORD> <text>`: the text (ECHO, VERSION). */
export function text(word: string): Parse<string> {
  const prefix = `${word} `;
  return (lines) => after(lines, prefix);
}

/** `REPLICATION enabled` or `REPLICATION disabled ...`: whether this node replicates. */
export const replication: Parse<boolean> = (lines) => after(lines, 'REPLICATION ') === 'enabled';

/** STATS and INFO: the header, `name:value` lines, `END`; the lines as a record. */
export const block: Parse<Record<string, string>> = (lines) => {
  if (lines[lines.length - 1] !== 'END') throw unexpected(lines);
  const fields: Record<string, string> = {};
  for (const line of lines.slice(1, -1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw unexpected(lines);
    fields[line.slice(0, colon)] = line.slice(colon + 1);
  }
  return fields;
};

/** One connection to the node, as CLIENT LIST shows it. */
export interface ClientInfo {
  readonly id: number;
  /** `host:port` of the client. */
  readonly addr: string;
  /** Seconds since it connected. */
  readonly age: number;
  /** Seconds since its last request. */
  readonly idle: number;
  /** Its last command word, in lower case. */
  readonly cmd: string;
}

/** CLIENT LIST: `id=<n> addr=<host:port> age=<s> idle=<s> cmd=<word>` lines, then `END`. */
export const clients: Parse<ClientInfo[]> = (lines) => {
  if (lines[lines.length - 1] !== 'END') throw unexpected(lines);
  return lines.slice(0, -1).map((line) => {
    const m = /^id=(\d+) addr=(\S*) age=(\d+) idle=(\d+) cmd=(.*)$/.exec(line);
    if (m === null) throw unexpected(lines);
    return { id: Number(m[1]), addr: m[2] as string, age: Number(m[3]), idle: Number(m[4]), cmd: m[5] as string };
  });
};

function first(lines: readonly string[]): string {
  return lines[0] ?? '';
}

function either(lines: readonly string[], yes: string, no: string): boolean {
  const line = first(lines);
  if (line === yes) return true;
  if (line === no) return false;
  throw unexpected(lines);
}

/** The first line's text after `prefix`. */
function after(lines: readonly string[], prefix: string): string {
  const line = first(lines);
  if (!line.startsWith(prefix)) throw unexpected(lines);
  return line.slice(prefix.length);
}

function integer(lines: readonly string[], text: string): number {
  if (!/^-?\d{1,20}$/.test(text)) throw unexpected(lines);
  return Number(text);
}

function unexpected(lines: readonly string[]): UnexpectedReplyError {
  return new UnexpectedReplyError(`unexpected reply: ${JSON.stringify(lines.slice(0, 3).join('\n').slice(0, 120))}`);
}
