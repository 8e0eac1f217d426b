import { keyProblem } from '../rules.js';
import { ArgumentError } from './errors.js';

/*
 * The words of a request line, checked before anything is sent (DESIGN.md section 2). A request is one
 * line: an argument holding a line break would make two requests, and every reply after it would be
 * matched to the wrong request. So what the protocol cannot carry is refused here, with ArgumentError.
 */

/** A value: a string, or a number sent as its decimal text. */
export type Value = string | number;

/** A key (or a set member): the rules every input path checks (rules.ts), the length limit left to the node. */
export function key(k: string): string {
  if (typeof k !== 'string') throw new ArgumentError(`a key must be a string, got ${typeof k}`);
  const problem = keyProblem(Buffer.from(k, 'utf8'), Number.MAX_SAFE_INTEGER);
  if (problem !== undefined) throw new ArgumentError(`${problem}: ${JSON.stringify(k.slice(0, 64))}`);
  return k;
}

/** Keys of MGET, EXISTS, SADD, SREM: at least one. */
export function keys(ks: readonly string[], what = 'key'): string {
  if (ks.length === 0) throw new ArgumentError(`at least one ${what} is needed`);
  return ks.map(key).join(' ');
}

/**
 * The value of SET, SETEX, APPEND, PREPEND: everything after the key's space, so it may hold spaces,
 * but not a line break, and not a space or tab at its end (the node trims the line). Not empty.
 */
export function value(v: Value): string {
  const text = typeof v === 'number' ? decimal(v) : v;
  if (typeof text !== 'string') throw new ArgumentError(`a value must be a string or a number, got ${typeof v}`);
  if (text === '') throw new ArgumentError('a value cannot be empty');
  return line(text, 'a value');
}

/** The rest of a line: PING's and ECHO's message, a raw command. */
export function line(text: string, what: string): string {
  if (/[\r\n]/.test(text)) throw new ArgumentError(`${what} cannot hold a line break (CR or LF): the protocol is one request per line`);
  if (/[ \t]$/.test(text)) throw new ArgumentError(`${what} cannot end in a space or tab: the node trims request lines`);
  return text;
}

/** An MSET value: the pairs are split at spaces, so each value is one word. */
export function word(v: Value): string {
  const text = value(v);
  if (/[ \t]/.test(text)) throw new ArgumentError(`MSET values are single words (use set() for a value with spaces): ${JSON.stringify(text.slice(0, 64))}`);
  return text;
}

/** An integer argument (INC's amount, seconds) as decimal text. */
export function integer(n: number | bigint, what: string): string {
  if (typeof n === 'bigint') return n.toString();
  if (!Number.isSafeInteger(n)) throw new ArgumentError(`${what} must be an integer, got ${String(n)}`);
  return String(n);
}

function decimal(n: number): string {
  if (!Number.isFinite(n)) throw new ArgumentError(`a value must be a finite number, got ${String(n)}`);
  return String(n);
}
