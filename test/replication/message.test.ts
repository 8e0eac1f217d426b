import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeMessage, encodeMessages, type Op } from '../../src/replication/message.js';

const limits = { maxKeyBytes: 32, maxValueBytes: 64 };
const hlc = { wall: 0x0193a0b1c2d3, counter: 7 };

describe('replication messages', () => {
  it('round-trip sets, deletes and non-UTF-8 values, in readable JSON', () => {
    const ops: Op[] = [
      { key: Buffer.from('user:1'), hlc, value: Buffer.from('alice smith ✓') },
      { key: Buffer.from('user:2'), hlc: { ...hlc, counter: 8 }, value: undefined },
      { key: Buffer.from('bin'), hlc, value: Buffer.from([0xff, 0x00, 0xc3]) },
    ];
    const [payload, ...more] = encodeMessages('node-1', ops, 1 << 20);
    expect(more).toEqual([]);
    const json = JSON.parse((payload as Buffer).toString()) as { ops: unknown[] };
    expect(json).toMatchObject({ v: 1, node: 'node-1' });
    expect(json.ops[0]).toEqual({ op: 'set', key: 'user:1', val: 'alice smith ✓', hlc: '0193a0b1c2d3-0007' });
    expect(json.ops[1]).toEqual({ op: 'del', key: 'user:2', hlc: '0193a0b1c2d3-0008' });
    expect(json.ops[2]).toEqual({ op: 'set', key: 'bin', val: '/wDD', enc: 'b64', hlc: '0193a0b1c2d3-0007' });
    expect(decodeMessage(payload as Buffer, limits)).toEqual({ message: { node: 'node-1', ops }, invalidOps: 0 });
  });

  it('writes the bytes JSON.stringify would, for any key and value, and reads them back', () => {
    const op = fc.record({
      // Keys a client may write (no spaces or control characters), with JSON's special characters.
      key: fc.string({ unit: fc.constantFrom('a', 'Z', '9', ':', '"', '\\', '/', 'é', '✓', '𝄞'), minLength: 1, maxLength: 8 }).map((k) => Buffer.from(k)),
      hlc: fc.record({ wall: fc.integer({ min: 0, max: 2 ** 48 - 1 }), counter: fc.integer({ min: 0, max: 0xffff }) }),
      value: fc.option(fc.oneof(fc.uint8Array({ maxLength: 16 }).map((v) => Buffer.from(v)), fc.string({ unit: 'binary', maxLength: 16 }).map((v) => Buffer.from(v))), { nil: undefined }),
    });
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 5 }), (ops) => {
        const [payload] = encodeMessages('n"1', ops, 1 << 20);
        const objects = ops.map((o) => {
          const key = o.key.toString('utf8');
          const hlc = `${o.hlc.wall.toString(16).padStart(12, '0')}-${o.hlc.counter.toString(16).padStart(4, '0')}`;
          if (o.value === undefined) return { op: 'del', key, hlc };
          const text = o.value.toString('utf8');
          if (Buffer.from(text).equals(o.value)) return { op: 'set', key, val: text, hlc };
          return { op: 'set', key, val: o.value.toString('base64'), enc: 'b64', hlc };
        });
        expect((payload as Buffer).toString()).toBe(JSON.stringify({ v: 1, node: 'n"1', ops: objects }));
        const back = decodeMessage(payload as Buffer, { maxKeyBytes: 64, maxValueBytes: 64 });
        expect(back?.message.ops.map((o) => [o.key, o.hlc, o.value])).toEqual(ops.map((o) => [o.key, o.hlc, o.value]));
      }),
      { numRuns: 300, seed: 11 },
    );
  });

  it('splits a batch into messages under the size limit, keeping order', () => {
    const ops: Op[] = Array.from({ length: 100 }, (_, i) => ({ key: Buffer.from(`k${i}`), hlc, value: Buffer.from('x'.repeat(40)) }));
    const payloads = encodeMessages('n', ops, 1000);
    expect(payloads.length).toBeGreaterThan(5);
    for (const p of payloads) expect(p.length).toBeLessThanOrEqual(1000);
    const back = payloads.flatMap((p) => decodeMessage(p, limits)?.message.ops ?? []);
    expect(back.map((o) => o.key.toString())).toEqual(ops.map((o) => o.key.toString()));
  });

  it('refuses malformed messages and drops malformed ops', () => {
    for (const bad of ['', 'nope', '[]', '{"v":2,"node":"n","ops":[]}', '{"v":1,"node":"","ops":[]}', '{"v":1,"node":"n"}']) {
      expect(decodeMessage(Buffer.from(bad), limits)).toBeUndefined();
    }
    const ops = [
      { op: 'set', key: 'ok', val: 'v', hlc: '0193a0b1c2d3-0000' },
      { op: 'set', key: 'has space', val: 'v', hlc: '0193a0b1c2d3-0000' },
      { op: 'set', key: 'k'.repeat(33), val: 'v', hlc: '0193a0b1c2d3-0000' },
      { op: 'set', key: 'big', val: 'v'.repeat(65), hlc: '0193a0b1c2d3-0000' },
      { op: 'set', key: 'clock', val: 'v', hlc: 'yesterday' },
      { op: 'inc', key: 'what', hlc: '0193a0b1c2d3-0000' },
      { op: 'set', key: 'noval', hlc: '0193a0b1c2d3-0000' },
      { op: 'set', key: 'enc', val: 'v', enc: 'rot13', hlc: '0193a0b1c2d3-0000' },
      'string',
    ];
    const decoded = decodeMessage(Buffer.from(JSON.stringify({ v: 1, node: 'n', ops })), limits);
    expect(decoded?.message.ops.map((o) => o.key.toString())).toEqual(['ok']);
    expect(decoded?.invalidOps).toBe(8);
  });
});
