import { describe, expect, it } from 'vitest';
import { PARSERS, type Request } from '../../src/commands/index.js';
import { ProtocolError } from '../../src/errors.js';
import { decodeRequest } from '../../src/protocol/decode.js';
import { LINE_TOO_LONG, LineReader } from '../../src/protocol/lines.js';

const limits = { maxKeyBytes: 16, maxValueBytes: 32 };

/** Frames `input` with a LineReader (whole or byte by byte) and decodes each line. */
function decodeAll(input: string | Buffer, byteByByte: boolean): (Request | string)[] {
  const bytes = Buffer.isBuffer(input) ? input : Buffer.from(input);
  const reader = new LineReader(1024);
  const out: (Request | string)[] = [];
  for (const chunk of byteByByte ? [...bytes].map((b) => Buffer.from([b])) : [bytes]) {
    reader.push(chunk);
    for (let line = reader.next(); line !== undefined; line = reader.next()) {
      if (line === LINE_TOO_LONG) throw new Error('unexpected overflow');
      try {
        out.push(decodeRequest(line, PARSERS, limits));
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        out.push(`ERROR ${err.message}`);
      }
    }
  }
  return out;
}

/** Buffers in requests compared as strings. */
function plain(r: Request | string): unknown {
  return JSON.parse(
    JSON.stringify(r, (_k, v: unknown) => {
      if (typeof v === 'bigint') return `${v}n`;
      if (v !== null && typeof v === 'object' && (v as { type?: string }).type === 'Buffer') {
        return Buffer.from((v as { data: number[] }).data).toString('utf8');
      }
      return v;
    }),
  );
}

const cases: [string, unknown][] = [
  ['GET user:1\n', { kind: 'get', key: 'user:1' }],
  ['get user:1\r\n', { kind: 'get', key: 'user:1' }],
  ['  \tGeT  user:1 \t\r\n', { kind: 'get', key: 'user:1' }],
  ['SET k hello world\n', { kind: 'set', key: 'k', value: 'hello world' }],
  ['SET k  two spaces\n', { kind: 'set', key: 'k', value: ' two spaces' }],
  ['SET k héllo ✓\n', { kind: 'set', key: 'k', value: 'héllo ✓' }],
  ['DEL k\n', { kind: 'del', key: 'k' }],
  ['DELETE k\n', { kind: 'del', key: 'k' }],
  ['INC n\n', { kind: 'incr', key: 'n', delta: '1n' }],
  ['INCR n 5\n', { kind: 'incr', key: 'n', delta: '5n' }],
  ['DEC n\n', { kind: 'incr', key: 'n', delta: '-1n' }],
  ['DECR n -7\n', { kind: 'incr', key: 'n', delta: '7n' }],
  ['APPEND k tail\n', { kind: 'append', key: 'k', value: 'tail', prepend: false }],
  ['PREPEND k head \n', { kind: 'append', key: 'k', value: 'head', prepend: true }],
  ['MGET a b c\n', { kind: 'mget', keys: ['a', 'b', 'c'] }],
  ['MSET a 1 b 2\n', { kind: 'mset', pairs: [['a', '1'], ['b', '2']] }],
  ['EXISTS a b\n', { kind: 'exists', keys: ['a', 'b'] }],
  ['SCAN\n', { kind: 'scan', prefix: '' }],
  ['SCAN user:\n', { kind: 'scan', prefix: 'user:' }],
  ['DBSIZE\n', { kind: 'dbsize' }],
  ['PING\n', { kind: 'ping', message: '' }],
  ['PING hello there\n', { kind: 'ping', message: 'hello there' }],
  ['ECHO a b\n', { kind: 'echo', message: 'a b' }],
  ['STATS\n', { kind: 'stats', header: 'STATS', section: 'general' }],
  ['stats Replication\n', { kind: 'stats', header: 'STATS', section: 'replication' }],
  ['STATS all\n', { kind: 'stats', header: 'STATS', section: 'all' }],
  ['INFO\n', { kind: 'stats', header: 'INFO', section: 'general' }],
  ['VERSION\n', { kind: 'version' }],
  ['TRUNCATE\n', { kind: 'truncate' }],
  ['FLUSHDB\n', { kind: 'truncate' }],
  ['QUIT\n', { kind: 'quit' }],
  ['\n', 'ERROR empty command'],
  ['   \t \r\n', 'ERROR empty command'],
  ['FROB x\n', 'ERROR Unknown command: FROB'],
  ['GET\n', 'ERROR GET command requires exactly one key'],
  ['GET a b\n', 'ERROR GET command requires exactly one key'],
  ['SET k\n', 'ERROR SET command requires a key and a value'],
  ['MSET a 1 b\n', 'ERROR MSET command requires an even number of arguments (key-value pairs)'],
  ['MGET\n', 'ERROR MGET command requires at least one key'],
  ['INC n x\n', 'ERROR INC command requires a key and an optional integer amount'],
  ['INC n 99999999999999999999\n', 'ERROR INC command requires a key and an optional integer amount'],
  ['DBSIZE x\n', 'ERROR DBSIZE command requires no arguments'],
  ['ECHO\n', 'ERROR ECHO command requires a message'],
  ['GET ' + 'k'.repeat(17) + '\n', 'ERROR key too long (17 bytes, the limit is 16)'],
  ['SET k ' + 'v'.repeat(33) + '\n', 'ERROR value too large (33 bytes, the limit is 32)'],
  ['GET a\tb\n', 'ERROR invalid key: control characters are not allowed'],
  ['GET a\x01\n', 'ERROR invalid key: control characters are not allowed'],
  ['\x01\x02\x7f\n', 'ERROR Unknown command: ???'],
];

describe.each([
  ['whole', false],
  ['byte by byte', true],
])('decodeRequest, input fed %s', (_name, byteByByte) => {
  it.each(cases)('%j', (input, expected) => {
    expect(decodeAll(input, byteByByte).map(plain)).toEqual([expected]);
  });

  it('decodes many pipelined requests in order', () => {
    const input = cases.map(([line]) => line).join('');
    expect(decodeAll(input, byteByByte).map(plain)).toEqual(cases.map(([, expected]) => expected));
  });

  it('refuses invalid UTF-8', () => {
    const bad = Buffer.concat([Buffer.from('SET k '), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('\n')]);
    expect(decodeAll(bad, byteByByte)).toEqual(['ERROR invalid UTF-8 in request']);
  });
});
