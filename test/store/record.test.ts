import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeRecord, encodeRecord, isTombstone, recordValue } from '../../src/store/record.js';

describe('record encoding', () => {
  it('round-trips every field', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 48 - 1 }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.string({ minLength: 1, maxLength: 40 }),
        fc.boolean(),
        fc.uint8Array({ maxLength: 200 }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: 0, max: 0xffffffff }),
        (wall, counter, node, tombstone, bytes, itemBytes, hi, lo) => {
          const value = Buffer.from(bytes);
          const item = Buffer.from(itemBytes).toString('latin1');
          const keyHash = { hi, lo };
          const buf = encodeRecord({ wall, counter, node, tombstone, value, item, keyHash });
          expect(decodeRecord(buf)).toEqual({ wall, counter, node, tombstone, value, item, keyHash });
          expect(isTombstone(buf)).toBe(tombstone);
          expect(recordValue(buf).equals(value)).toBe(true);
        },
      ),
    );
  });

  it('refuses an unknown format', () => {
    expect(() => decodeRecord(Buffer.alloc(40, 9))).toThrow(/unknown record format/);
  });
});
