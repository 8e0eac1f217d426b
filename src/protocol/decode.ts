import { isUtf8 } from 'node:buffer';
import { ProtocolError } from '../errors.js';
import type { Limits } from '../rules.js';
import { Args } from './args.js';

/** A command word's entry in a decoder's table: at least what its arity errors say. */
export interface Entry {
  /** Completes "<CMD> command requires ..." in arity errors. */
  readonly requires: string;
}

/** How a command word turns its arguments into a typed request. */
export interface Parser<R> extends Entry {
  parse(args: Args): R;
}

/**
 * Takes a request line's command word (its entry) and its arguments, not parsed yet; `context` is what
 * the caller of decodeLine passed along, so a handler made once serves every request.
 */
export type Handler<P, C, T> = (entry: P, args: Args, context: C) => T;

const SPACE = 0x20;
const TAB = 0x09;
const CR = 0x0d;

/** Turns one request line into a typed request with its word's parser (as decodeLine reads it), or throws `ProtocolError`. */
export function decodeRequest<R>(raw: Buffer, parsers: ReadonlyMap<string, Parser<R>>, limits: Limits): R {
  return decodeLine(raw, parsers, new Args(raw, 0, limits, '', ''), parse, undefined);
}

function parse<R>(parser: Parser<R>, args: Args): R {
  return parser.parse(args);
}

/**
 * Splits one request line (without its `\n`) into its command word's entry in `table` and the arguments
 * after the word, and hands both to `handle`; or throws `ProtocolError`. The line is trimmed of a
 * trailing `\r` and of surrounding spaces and tabs; the command word is case-insensitive (DESIGN.md
 * section 2). The handler sees the command before its arguments are parsed, so it can refuse it (not
 * authenticated) saying only that, whatever its arguments.
 */
export function decodeLine<P extends Entry, C, T>(raw: Buffer, table: ReadonlyMap<string, P>, args: Args, handle: Handler<P, C, T>, context: C): T {
  let start = 0;
  let end = raw.length;
  if (end > 0 && raw[end - 1] === CR) end--;
  while (start < end && isBlank(raw[start])) start++;
  while (end > start && isBlank(raw[end - 1])) end--;
  if (start === end) throw new ProtocolError('empty command');
  // Trimming takes only ASCII bytes off the ends: the whole line is UTF-8 exactly when the trimmed one is.
  if (!isUtf8(raw)) throw new ProtocolError('invalid UTF-8 in request');
  // Offsets into `raw` rather than a trimmed view: no object made per request.
  let wordEnd = start;
  while (wordEnd < end && raw[wordEnd] !== SPACE) wordEnd++;
  // Command words are short ASCII: latin1 is the cheapest exact decoding, and anything else is unknown.
  const word = hotWord(raw, start, wordEnd) ?? raw.toString('latin1', start, Math.min(wordEnd, start + 32)).toUpperCase();
  const entry = table.get(word);
  if (entry === undefined) {
    throw new ProtocolError(`Unknown command: ${printable(raw.toString('utf8', start, Math.min(wordEnd, start + 64)))}`);
  }
  return handle(entry, args.reset(raw, wordEnd, end, word, entry.requires), context);
}

/** GET and SET, recognised without building strings: most requests are one of them. */
function hotWord(line: Buffer, start: number, end: number): string | undefined {
  if (end - start !== 3 || ((line[start + 1] as number) | 0x20) !== 0x65 || ((line[start + 2] as number) | 0x20) !== 0x74) return undefined;
  const first = (line[start] as number) | 0x20;
  return first === 0x67 ? 'GET' : first === 0x73 ? 'SET' : undefined;
}

function isBlank(b: number | undefined): boolean {
  return b === SPACE || b === TAB;
}

/** Control characters of an echoed word would break the reply's framing. */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f]/g, '?');
}
