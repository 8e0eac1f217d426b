import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { toSigned32, toUnsigned32, toUnsigned64 } from '../../src/memcached/numbers.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

describe("memcached's number conversions (64-bit strtoul/strtol, cut to the field)", () => {
  it('reads what memcached 1.6.18 reads, and refuses what it refuses', () => {
    // Checked one by one against a real memcached 1.6.18 (test/memcached/transcript.test.ts runs several).
    expect(toUnsigned32(b('0'))).toBe(0);
    expect(toUnsigned32(b('4294967295'))).toBe(4294967295);
    expect(toUnsigned32(b('4294967296'))).toBe(0);
    expect(toUnsigned32(b('18446744073709551615'))).toBe(4294967295);
    expect(toUnsigned32(b('18446744073709551616'))).toBeUndefined();
    expect(toUnsigned32(b('+5'))).toBe(5);
    expect(toUnsigned32(b('-1'))).toBeUndefined();
    expect(toUnsigned32(b('-0'))).toBe(0);
    expect(toUnsigned32(b(''))).toBeUndefined();
    expect(toUnsigned32(b('+'))).toBeUndefined();
    expect(toUnsigned32(b('5x'))).toBeUndefined();
    expect(toUnsigned32(b('\t5\t'))).toBe(5);
    expect(toSigned32(b('2147483647'))).toBe(2147483647);
    expect(toSigned32(b('2147483648'))).toBe(-2147483648);
    expect(toSigned32(b('4294967396'))).toBe(100);
    expect(toSigned32(b('-2147483649'))).toBe(2147483647);
    expect(toSigned32(b('9223372036854775807'))).toBe(-1);
    expect(toSigned32(b('9223372036854775808'))).toBeUndefined();
    expect(toSigned32(b('-9223372036854775808'))).toBe(0);
    expect(toSigned32(b('-9223372036854775809'))).toBeUndefined();
    expect(toSigned32(b('-1'))).toBe(-1);
    expect(toUnsigned64(b('18446744073709551615'))).toBe(18446744073709551615n);
    expect(toUnsigned64(b('18446744073709551616'))).toBeUndefined();
    expect(toUnsigned64(b('-1'))).toBeUndefined();
    // strtoull negates in unsigned arithmetic: a result that is not negative as a signed number stands.
    expect(toUnsigned64(b('-18446744073709551615'))).toBe(1n);
    // A number followed by white space (or a NUL) is read up to it, as C reads a value for incr.
    expect(toUnsigned64(b(' 07 \r\n'))).toBe(7n);
    expect(toUnsigned64(b('12\0abc'))).toBe(12n);
    expect(toUnsigned64(b('12abc'))).toBeUndefined();
  });

  it('agrees with exact arithmetic on any decimal', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }), fc.boolean(), (n, plus) => {
        const text = n < 0n ? String(n) : `${plus ? '+' : ''}${n}`;
        const s = toSigned32(b(text));
        expect(s).toBe(n >= -(1n << 63n) && n < 1n << 63n ? Number(BigInt.asIntN(32, n)) : undefined);
        const u = toUnsigned64(b(text));
        const wrapped = n < 0n ? BigInt.asUintN(64, n) : n;
        const ok = n >= 0n ? n < 1n << 64n : -n < 1n << 64n && wrapped < 1n << 63n;
        expect(u).toBe(ok ? wrapped : undefined);
        expect(toUnsigned32(b(text))).toBe(ok ? Number(BigInt.asUintN(32, wrapped)) : undefined);
      }),
    );
  });
});
