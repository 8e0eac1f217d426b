/*
 * memcached's number conversions (its util.c safe_strtoul, safe_strtol, safe_strtoull on a 64-bit
 * build), so that a number memcached takes is taken here and one it refuses is refused, with the same
 * reply. They follow C's strtol family: leading white space and a sign are allowed, the digits may run
 * into white space (what follows it is not looked at), and the result is range-checked in 64 bits and
 * then cut to the field's width: flags `4294967296` are stored as 0, an exptime of `2147483648` is
 * negative (expired), as in memcached.
 */

const U64 = 1n << 64n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;

/** What strtoull/strtol read: the sign, the magnitude, and whether the text was a number at all. */
interface Scanned {
  readonly negative: boolean;
  readonly magnitude: bigint;
}

/** C's isspace in the "C" locale. */
function isSpace(b: number | undefined): boolean {
  return b === 0x20 || (b !== undefined && b >= 0x09 && b <= 0x0d);
}

/**
 * Leading white space, a sign, at least one digit, then the end, a NUL (the end of a C string) or
 * white space. Undefined for anything else.
 */
function scan(b: Buffer): Scanned | undefined {
  let i = 0;
  while (isSpace(b[i])) i++;
  const negative = b[i] === 0x2d;
  if (negative || b[i] === 0x2b) i++;
  const start = i;
  while (i < b.length && (b[i] as number) >= 0x30 && (b[i] as number) <= 0x39) i++;
  if (i === start) return undefined;
  if (i < b.length && b[i] !== 0 && !isSpace(b[i])) return undefined;
  return { negative, magnitude: BigInt(b.toString('latin1', start, i)) };
}

/** Up to nine plain digits: the common case, without BigInt. */
function smallDigits(b: Buffer): number | undefined {
  if (b.length === 0 || b.length > 9) return undefined;
  let n = 0;
  for (let i = 0; i < b.length; i++) {
    const d = (b[i] as number) - 0x30;
    if (d < 0 || d > 9) return undefined;
    n = n * 10 + d;
  }
  return n;
}

/** memcached's safe_strtoull: an unsigned 64-bit number (incr/decr deltas, cas uniques, counter values). */
export function toUnsigned64(b: Buffer): bigint | undefined {
  const small = smallDigits(b);
  if (small !== undefined) return BigInt(small);
  const s = scan(b);
  if (s === undefined || s.magnitude >= U64) return undefined;
  const value = s.negative ? (U64 - s.magnitude) % U64 : s.magnitude;
  // A result that is negative as a signed number and was written with a minus sign is refused.
  return s.negative && value > I64_MAX ? undefined : value;
}

/** memcached's safe_strtoul on a 64-bit build: an unsigned 64-bit number cut to 32 bits (flags). */
export function toUnsigned32(b: Buffer): number | undefined {
  const small = smallDigits(b);
  if (small !== undefined) return small;
  const v = toUnsigned64(b);
  return v === undefined ? undefined : Number(BigInt.asUintN(32, v));
}

/** memcached's safe_strtol on a 64-bit build: a signed 64-bit number cut to 32 bits (exptime, lengths, delays). */
export function toSigned32(b: Buffer): number | undefined {
  const small = smallDigits(b);
  if (small !== undefined) return small;
  const s = scan(b);
  if (s === undefined) return undefined;
  const v = s.negative ? -s.magnitude : s.magnitude;
  if (v < I64_MIN || v > I64_MAX) return undefined;
  return Number(BigInt.asIntN(32, v));
}
