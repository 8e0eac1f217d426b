import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeMessage, encodeMessages, opOf, type Op } from '../../src/replication/message.js';
import { encodeCounter } from '../../src/store/counter.js';
import { encodeMember, memberKey } from '../../src/store/members.js';
import type { Hlc } from '../../src/hlc.js';
import { KIND, kindFlags } from '../../src/store/record.js';
import { plainState } from '../../src/store/state.js';

const op = (key: Buffer, at: Hlc, value: Buffer | undefined, node = 'node-1'): Op => ({ key, state: plainState({ ...at, node }, value) });

const limits = { maxKeyBytes: 32, maxValueBytes: 64 };
const hlc = { wall: 0x0193a0b1c2d3, counter: 7 };

describe('replication messages', () => {
  it('round-trip sets, deletes and non-UTF-8 values, in readable JSON', () => {
    const ops: Op[] = [
      op(Buffer.from('user:1'), hlc, Buffer.from('alice smith ✓')),
      op(Buffer.from('user:2'), { ...hlc, counter: 8 }, undefined),
      op(Buffer.from('bin'), hlc, Buffer.from([0xff, 0x00, 0xc3])),
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
    const arb = fc.record({
      // Keys a client may write (no spaces or control characters), with JSON's special characters.
      key: fc.string({ unit: fc.constantFrom('a', 'Z', '9', ':', '"', '\\', '/', 'é', '✓', '𝄞'), minLength: 1, maxLength: 8 }).map((k) => Buffer.from(k)),
      hlc: fc.record({ wall: fc.integer({ min: 0, max: 2 ** 48 - 1 }), counter: fc.integer({ min: 0, max: 0xffff }) }),
      value: fc.option(fc.oneof(fc.uint8Array({ maxLength: 16 }).map((v) => Buffer.from(v)), fc.string({ unit: 'binary', maxLength: 16 }).map((v) => Buffer.from(v))), { nil: undefined }),
    });
    fc.assert(
      fc.property(fc.array(arb, { minLength: 1, maxLength: 5 }), (ops) => {
        const [payload] = encodeMessages('n"1', ops.map((o) => op(o.key, o.hlc, o.value, 'n"1')), 1 << 20);
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
        expect(back?.message.ops).toEqual(ops.map((o) => op(o.key, o.hlc, o.value, 'n"1')));
      }),
      { numRuns: 300, seed: 11 },
    );
  });

  it('splits a batch into messages under the size limit, keeping order', () => {
    const ops: Op[] = Array.from({ length: 100 }, (_, i) => op(Buffer.from(`k${i}`), hlc, Buffer.from('x'.repeat(40)), 'n'));
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

  it('carry a counter as this node\'s totals, and an expiry register, readably', () => {
    const epoch = { wall: 0x0193a0b1c2d3, counter: 0, node: 'node-2' };
    const at = { wall: 0x0193a0b1c2d9, counter: 1 };
    const counter = encodeCounter({ base: 5n, entries: [{ node: 'node-1', p: 17n, n: 2n, at }, { node: 'node-3', p: 1n, n: 0n, at }] });
    const state = { epoch, flags: kindFlags(KIND.counter), expiry: { at: 1_800_000_000_000, version: { ...at, node: 'node-1' } }, payload: counter };
    const [payload] = encodeMessages('node-1', [opOf(Buffer.from('hits'), state, 'node-1')], 1 << 20);
    const json = JSON.parse((payload as Buffer).toString()) as { ops: unknown[] };
    expect(json.ops[0]).toEqual({
      op: 'counter',
      key: 'hits',
      hlc: '0193a0b1c2d3-0000',
      by: 'node-2',
      base: '5',
      totals: [['node-1', '17', '2', '0193a0b1c2d9-0001']],
      exp: 1_800_000_000_000,
      xhlc: '0193a0b1c2d9-0001',
    });
    const back = decodeMessage(payload as Buffer, limits)?.message.ops[0];
    expect(back).toEqual(opOf(Buffer.from('hits'), state, 'node-1'));
    // A set with an expiry, and the zero epoch ("by": "").
    const setex = { key: Buffer.from('s'), state: plainState({ ...at, node: 'node-1' }, Buffer.from('v'), 1_800_000_000_000) };
    const zero = { key: Buffer.from('z'), state: { ...state, epoch: { wall: 0, counter: 0, node: '' }, expiry: undefined, payload: encodeCounter({ base: 0n, entries: [] }) } };
    const [two] = encodeMessages('node-1', [setex, zero], 1 << 20);
    expect(decodeMessage(two as Buffer, limits)?.message.ops).toEqual([setex, zero]);
  });

  it('drops counter ops that are malformed', () => {
    const good = { op: 'counter', key: 'c', hlc: '0193a0b1c2d3-0000', base: '0', totals: [['n', '1', '0', '0193a0b1c2d3-0000']] };
    const bad = [
      { ...good, base: '1.5' },
      { ...good, base: '9223372036854775808' },
      { ...good, totals: [['n', '-1', '0', '0193a0b1c2d3-0000']] },
      { ...good, totals: [['n', '18446744073709551616', '0', '0193a0b1c2d3-0000']] },
      { ...good, totals: [['bad node', '1', '0', '0193a0b1c2d3-0000']] },
      { ...good, totals: [['n', '1', '0', '0193a0b1c2d3-0000'], ['n', '2', '0', '0193a0b1c2d3-0000']] },
      { ...good, totals: [['n', '1', '0']] },
      { ...good, by: 'bad node' },
      { ...good, exp: -1, xhlc: '0193a0b1c2d3-0000' },
      { ...good, exp: 5 },
      { op: 'del', key: 'd', hlc: '0193a0b1c2d3-0000', exp: 5, xhlc: '0193a0b1c2d3-0000' },
    ];
    const decoded = decodeMessage(Buffer.from(JSON.stringify({ v: 1, node: 'n', ops: [good, ...bad] })), limits);
    expect(decoded?.message.ops).toHaveLength(1);
    expect(decoded?.invalidOps).toBe(bad.length);
  });

  it('carry a set as its header and one member record per op, readably', () => {
    const epoch = { wall: 0, counter: 0, node: '' };
    const dot = { wall: 0x0193a0b1c2da, counter: 0 };
    const removedAt = { wall: 0x0193a0b1c2db, counter: 2 };
    const header = { key: Buffer.from('tags'), state: { epoch, flags: kindFlags(KIND.set), expiry: undefined, payload: Buffer.alloc(0) } };
    const entries = [
      { node: 'node-1', dot, removed: undefined },
      { node: 'node-2', dot, removed: removedAt },
    ];
    const member = { key: memberKey(Buffer.from('tags'), Buffer.from('red')), state: { epoch, flags: kindFlags(KIND.member), expiry: undefined, payload: encodeMember(entries) } };
    const [payload] = encodeMessages('node-1', [header, member], 1 << 20);
    const json = JSON.parse((payload as Buffer).toString()) as { ops: unknown[] };
    expect(json.ops).toEqual([
      { op: 'newset', key: 'tags', hlc: '000000000000-0000', by: '' },
      { op: 'member', key: 'tags', member: 'red', hlc: '000000000000-0000', by: '', adds: [['node-1', '0193a0b1c2da-0000', ''], ['node-2', '0193a0b1c2da-0000', '0193a0b1c2db-0002']] },
    ]);
    expect(decodeMessage(payload as Buffer, limits)?.message.ops).toEqual([header, member]);
  });

  it('drops set member ops that are malformed', () => {
    const good = { op: 'member', key: 's', member: 'm', hlc: '0193a0b1c2d3-0000', adds: [['n', '0193a0b1c2d3-0000', '']] };
    const bad = [
      { ...good, member: 'two words' },
      { ...good, member: '' },
      { ...good, member: 'x'.repeat(33) },
      { ...good, adds: [] },
      { ...good, adds: [['n', '0193a0b1c2d3-0000']] },
      { ...good, adds: [['n', '000000000000-0000', '']] },
      { ...good, adds: [['n', '0193a0b1c2d3-0000', 'later']] },
      { ...good, adds: [['n', '0193a0b1c2d3-0000', ''], ['n', '0193a0b1c2d4-0000', '']] },
      { ...good, adds: [['bad node', '0193a0b1c2d3-0000', '']] },
      { ...good, exp: 5, xhlc: '0193a0b1c2d3-0000' },
      { op: 'newset', key: 'bad key', hlc: '0193a0b1c2d3-0000' },
    ];
    const decoded = decodeMessage(Buffer.from(JSON.stringify({ v: 1, node: 'n', ops: [good, ...bad] })), limits);
    expect(decoded?.message.ops).toHaveLength(1);
    expect(decoded?.invalidOps).toBe(bad.length);
  });
});
