import type { Args } from '../protocol/args.js';
import { ProtocolError } from '../errors.js';

/** A command on a key holding another kind of value (DESIGN.md section 2), worded as Redis words it. */
export const WRONG_KIND = 'WRONGTYPE Operation against a key holding the wrong kind of value';

/** The longest TTL a command may set: about 100 years, so every expiry time fits the record's 48 bits. */
const MAX_SECONDS = 100 * 365 * 24 * 3600;

/**
 * A TTL in seconds (SETEX, EXPIRE): a decimal integer, `positive` for SETEX (EXPIRE takes 0 or less to
 * mean "delete now", as Redis does). Redis's wording for the errors.
 */
export function parseSeconds(args: Args, positive: boolean): number {
  const word = args.word();
  if (word === undefined) throw args.usage();
  const text = word.toString('latin1');
  if (!/^[+-]?\d{1,12}$/.test(text)) throw new ProtocolError('value is not an integer or out of range');
  const seconds = Number(text);
  if ((positive && seconds <= 0) || seconds > MAX_SECONDS) {
    throw new ProtocolError(`invalid expire time in '${args.command.toLowerCase()}' command`);
  }
  return seconds;
}
