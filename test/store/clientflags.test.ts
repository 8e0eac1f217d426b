import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { putLine, parsePut } from '../../src/antientropy/requests.js';
import { Args } from '../../src/protocol/args.js';
import { decodeMessage, encodeMessages, opOf } from '../../src/replication/message.js';
import { FLAG_CLIENT_FLAGS, FLAG_EXPIRY, KIND, kindFlags, recordClientFlags, recordItem } from '../../src/store/record.js';
import { encodeState, parseBody, plainState, stateOf, type RecordState } from '../../src/store/state.js';
import { Store } from '../../src/store/store.js';
import { silent, tempDir } from '../helpers.js';

/*
 * memcached's client flags (issue #12): 32 bits stored with a plain value, in its record, its item
 * hash, its replication op and its anti-entropy transfer. Absent means 0, and 0 is stored as absent.
 */

const limits = { maxKeyBytes: 64, maxValueBytes: 1024 };
const epoch = { wall: 0x0193a0b1c2d3, counter: 2, node: 'n1' };
const withFlags = (clientFlags: number, at = 0): RecordState => ({ ...plainState(epoch, Buffer.from('value'), at), clientFlags });

function openStore(): Store {
  const store = Store.open({ path: join(tempDir(), 'db'), nodeId: 'n1', maxClockSkewMs: 60_000, tombstoneGraceSeconds: 86_400, logger: silent });
  onTestFinished(() => store.close());
  return store;
}

describe('client flags', () => {
  it('encode canonically, after the expiry register, and parse back', () => {
    for (const at of [0, Date.now() + 60_000]) {
      const state = withFlags(0xdeadbeef, at);
      const { flags, body } = encodeState(state);
      expect(flags & FLAG_CLIENT_FLAGS).toBe(FLAG_CLIENT_FLAGS);
      expect((flags & FLAG_EXPIRY) !== 0).toBe(at !== 0);
      expect(body.subarray(body.length - 9, body.length - 5).readUInt32BE(0)).toBe(0xdeadbeef);
      expect(parseBody(epoch, flags, body, limits)).toEqual(state);
    }
    // 0 is no flags at all: the same encoding as a value written without them.
    expect(encodeState(withFlags(0))).toEqual(encodeState(plainState(epoch, Buffer.from('value'))));
  });

  it('are refused where they cannot be: on a tombstone or a counter, as 0, or cut short', () => {
    const { body } = encodeState(withFlags(7));
    expect(() => parseBody(epoch, FLAG_CLIENT_FLAGS | kindFlags(KIND.counter), body, limits)).toThrow(/only a value has client flags/);
    expect(() => parseBody(epoch, FLAG_CLIENT_FLAGS | 1, Buffer.alloc(4), limits)).toThrow(/only a value has client flags/);
    expect(() => parseBody(epoch, FLAG_CLIENT_FLAGS, Buffer.alloc(4), limits)).toThrow(/client flags 0 are stored as none/);
    expect(() => parseBody(epoch, FLAG_CLIENT_FLAGS, Buffer.from([0, 1]), limits)).toThrow(/truncated client flags/);
  });

  it('are stored with the value: reads of the value skip them, and they change the item hash', async () => {
    const store = openStore();
    await store.writeState(Buffer.from('a'), withFlags(42));
    await store.writeState(Buffer.from('b'), plainState(epoch, Buffer.from('value')));
    expect(store.readValue(Buffer.from('a')).value).toEqual(Buffer.from('value'));
    const a = Buffer.from(store.read(Buffer.from('a')).value as Buffer);
    expect(recordClientFlags(a)).toBe(42);
    expect(stateOf(a)).toMatchObject({ clientFlags: 42, payload: Buffer.from('value') });
    expect(recordClientFlags(store.read(Buffer.from('b')).value as Buffer)).toBe(0);
    const other = openStore();
    await other.writeState(Buffer.from('a'), withFlags(43));
    expect(recordItem(other.read(Buffer.from('a')).value as Buffer)).not.toBe(recordItem(a));
  });

  it('travel in a replication op as "mcf" and through anti-entropy as the record', () => {
    const op = opOf(Buffer.from('k'), withFlags(99, Date.now() + 60_000), 'n1');
    const [payload] = encodeMessages('n1', [op], 1 << 20);
    const json = JSON.parse((payload as Buffer).toString()) as { ops: Record<string, unknown>[] };
    expect(json.ops[0]).toMatchObject({ op: 'set', key: 'k', val: 'value', mcf: 99 });
    expect(decodeMessage(payload as Buffer, limits)?.message.ops).toEqual([op]);
    for (const bad of [0, -1, 2 ** 32, 1.5, '7']) {
      const forged = Buffer.from(JSON.stringify({ v: 1, node: 'n1', ops: [{ op: 'set', key: 'k', val: 'v', mcf: bad, hlc: '0193a0b1c2d3-0000' }] }));
      expect(decodeMessage(forged, limits)?.invalidOps).toBe(1);
    }
    const line = putLine({ key: Buffer.from('k'), state: withFlags(5) }).toString().trimEnd();
    expect(line).toMatch(/^AE\.PUT k x /);
    const args = Buffer.from(line);
    const put = parsePut(new Args(args, 'AE.PUT'.length, limits, 'AE.PUT', 'a record'));
    expect(put.state).toEqual(withFlags(5));
  });
});
