import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseVersionWord, putLine } from '../src/antientropy/requests.js';
import { loadConfig } from '../src/config/load.js';
import { ProtocolError } from '../src/errors.js';
import { decodeMessage, encodeMessages } from '../src/replication/message.js';
import { checkKey, keyProblem, maxMessageBytes, MAX_OPS_PER_MESSAGE, nodeIdProblem, parsePeer } from '../src/rules.js';
import { encodeRecord, FLAG_TOMBSTONE, recordVersionOf } from '../src/store/record.js';
import { plainState } from '../src/store/state.js';

const limits = { maxKeyBytes: 16, maxValueBytes: 64 };
const hlc = { wall: 0x0193a0b1c2d3, counter: 1 };

/** One replication message from `node` with `ops`, as raw JSON. */
function message(node: unknown, ops: unknown[]): Buffer {
  return Buffer.from(JSON.stringify({ v: 1, node, ops }));
}

describe('input rules', () => {
  it('says what is wrong with a key', () => {
    expect(keyProblem(Buffer.from('user:1'), 16)).toBeUndefined();
    expect(keyProblem(Buffer.from('ключ✓'), 16)).toBeUndefined();
    expect(keyProblem(Buffer.alloc(0), 16)).toBe('invalid key: empty');
    expect(keyProblem(Buffer.from('k'.repeat(17)), 16)).toBe('key too long (17 bytes, the limit is 16)');
    expect(keyProblem(Buffer.from('a b'), 16)).toBe('invalid key: spaces are not allowed');
    for (const c of ['\t', '\r', '\n', '\u0000', '\u0001', '\u007f']) {
      expect(keyProblem(Buffer.from(`a${c}b`), 16)).toBe('invalid key: control characters are not allowed');
    }
    expect(keyProblem(Buffer.from([0x61, 0xff]), 16)).toBe('invalid key: not UTF-8');
    expect(() => checkKey(Buffer.from('a b'), limits)).toThrow(ProtocolError);
  });

  it('says what is wrong with a node id, the same for config, replication and anti-entropy', () => {
    expect(nodeIdProblem('node-1')).toBeUndefined();
    expect(nodeIdProblem('n'.repeat(255))).toBeUndefined();
    expect(nodeIdProblem('')).toBe('is empty');
    expect(nodeIdProblem('n'.repeat(256))).toBe('is 256 bytes long (at most 255)');
    expect(nodeIdProblem('a b\u0001')).toBe('contains a space or a control character');
    expect(nodeIdProblem('a\ud800')).toBe('is not valid UTF-8');
    expect(nodeIdProblem(Buffer.from([0x61, 0xc3]))).toBe('is not valid UTF-8');

    for (const bad of ['a b\u0001', 'n'.repeat(300), '']) {
      expect(() => loadConfig({ flags: { node_id: bad } })).toThrow(/node_id/);
      expect(decodeMessage(message(bad, [{ op: 'del', key: 'k', hlc: '0193a0b1c2d3-0001' }]), limits)).toBeUndefined();
      expect(() => parseVersionWord(Buffer.from('0193a0b1c2d3-0001'), Buffer.from(bad))).toThrow(ProtocolError);
    }
  });

  it('reads a peer address, host:port or [v6]:port, the same for config and anti-entropy', () => {
    expect(parsePeer('10.0.0.2:7379')).toEqual({ host: '10.0.0.2', port: 7379 });
    expect(parsePeer('kv-2.local:1')).toEqual({ host: 'kv-2.local', port: 1 });
    expect(parsePeer('[::1]:65535')).toEqual({ host: '::1', port: 65535 });
    for (const bad of ['10.0.0.2', '10.0.0.2:0', '10.0.0.2:65536', '::1:7379', ':7379', 'host:port']) {
      expect(() => parsePeer(bad)).toThrow(`peer address must be host:port, got '${bad}'`);
    }
  });

  it('drops replication messages over the byte or op caps, and ops with keys or values a client could not send', () => {
    const del = (key: string): object => ({ op: 'del', key, hlc: '0193a0b1c2d3-0001' });
    const many = Array.from({ length: MAX_OPS_PER_MESSAGE + 1 }, (_, i) => del(`k${i}`));
    expect(decodeMessage(message('n', many), { maxKeyBytes: 16, maxValueBytes: 1 << 20 })).toBeUndefined();
    const huge = Buffer.alloc(maxMessageBytes(limits) + 1, 0x20);
    message('n', [del('k')]).copy(huge);
    expect(decodeMessage(huge, limits)).toBeUndefined();
    const decoded = decodeMessage(
      message('n', [del('ok'), del('a b'), del('x'.repeat(17)), del('a\u0000'), { op: 'set', key: 'v', val: 'x'.repeat(65), hlc: '0193a0b1c2d3-0001' }]),
      limits,
    );
    expect(decoded?.message.ops.map((o) => o.key.toString())).toEqual(['ok']);
    expect(decoded?.invalidOps).toBe(4);
  });

  it('a key and node id that pass travel by every path unchanged: a record, a replication message, an AE.PUT line', () => {
    const word = (max: number): fc.Arbitrary<string> =>
      fc.string({ unit: fc.oneof(fc.constantFrom('a', ':', '"', '\\', 'é', '✓', '𝄞'), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 })), minLength: 1, maxLength: max });
    fc.assert(
      fc.property(word(8), word(8), (k, node) => {
        const key = Buffer.from(k);
        fc.pre(keyProblem(key, limits.maxKeyBytes) === undefined && nodeIdProblem(node) === undefined);
        const version = { ...hlc, node };
        expect(recordVersionOf(encodeRecord({ ...version, flags: FLAG_TOMBSTONE, body: Buffer.alloc(0), item: '\0'.repeat(16), keyHash: { hi: 0, lo: 0 } }))).toEqual(version);
        const op = { key, state: plainState(version, undefined) };
        const [payload] = encodeMessages(node, [op], 1 << 20);
        expect(decodeMessage(payload as Buffer, limits)).toEqual({ message: { node, ops: [op] }, invalidOps: 0 });
        const words = putLine(op).toString('utf8').trimEnd().split(' ');
        expect(words).toEqual(['AE.PUT', k, '0193a0b1c2d3-0001', node, 'd']);
        expect(parseVersionWord(Buffer.from(words[2] as string), Buffer.from(words[3] as string))).toEqual(version);
      }),
      { numRuns: 300 },
    );
  });
});
