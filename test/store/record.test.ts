import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeRecord, encodeRecord, FLAG_TOMBSTONE, isTombstone, recordExpiry, recordValue } from '../../src/store/record.js';
import { encodeState, parseBody } from '../../src/store/state.js';

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
          const body = tombstone ? Buffer.alloc(0) : Buffer.from(bytes);
          const item = Buffer.from(itemBytes).toString('latin1');
          const keyHash = { hi, lo };
          const flags = tombstone ? FLAG_TOMBSTONE : 0;
          const buf = encodeRecord({ wall, counter, node, flags, body, item, keyHash });
          expect(decodeRecord(buf)).toEqual({ wall, counter, node, flags, body, item, keyHash });
          expect(isTombstone(buf)).toBe(tombstone);
          expect(recordValue(buf).equals(body)).toBe(true);
        },
      ),
    );
  });

  it('keeps an expiry register between the node id and the value', () => {
    const epoch = { wall: 1_700_000_000_000, counter: 3, node: 'node-1' };
    const state = { epoch, flags: 0, expiry: { at: 1_700_000_060_000, version: { ...epoch, node: 'node-2' } }, payload: Buffer.from('v a l') };
    const { flags, body } = encodeState(state);
    const buf = encodeRecord({ ...epoch, flags, body, item: '\0'.repeat(16), keyHash: { hi: 1, lo: 2 } });
    expect(recordValue(buf).toString()).toBe('v a l');
    expect(recordExpiry(buf)).toBe(1_700_000_060_000);
    expect(parseBody(epoch, flags, body)).toEqual(state);
  });

  it('reads a format-2 record (the previous release) as it is', () => {
    const buf = encodeRecord({ wall: 5, counter: 1, node: 'n', flags: 0, body: Buffer.from('old'), item: '\0'.repeat(16), keyHash: { hi: 1, lo: 2 } });
    buf[0] = 2;
    expect(decodeRecord(buf)).toMatchObject({ wall: 5, node: 'n', flags: 0, body: Buffer.from('old') });
  });

  it('refuses an unknown format', () => {
    expect(() => decodeRecord(Buffer.alloc(40, 9))).toThrow(/unknown record format/);
  });
});
