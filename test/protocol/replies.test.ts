import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ReplyReader } from '../../src/protocol/replies.js';

const CASES: [string, string, string[]][] = [
  ['GET a', 'VALUE x y\r\n', ['VALUE x y']],
  ['GET a', 'NOT_FOUND\r\n', ['NOT_FOUND']],
  ['SCAN', 'KEYS 2\r\na\r\nb\r\n', ['KEYS 2', 'a', 'b']],
  ['SCAN', 'KEYS 0\r\n', ['KEYS 0']],
  ['SMEMBERS s', 'MEMBERS 1\r\nm\r\n', ['MEMBERS 1', 'm']],
  ['MGET a b c', 'VALUES 1\r\na 1\r\nb NOT_FOUND\r\nc NOT_FOUND\r\n', ['VALUES 1', 'a 1', 'b NOT_FOUND', 'c NOT_FOUND']],
  ['MGET a b', 'NOT_FOUND\r\n', ['NOT_FOUND']],
  ['STATS', 'STATS\r\nkeys:1\r\nuptime:0d 0h 0m 1s\r\nEND\r\n', ['STATS', 'keys:1', 'uptime:0d 0h 0m 1s', 'END']],
  ['info', 'INFO\r\ndb_keys:0\r\nEND\r\n', ['INFO', 'db_keys:0', 'END']],
  ['CLIENT LIST', 'id=1 addr=127.0.0.1:5 age=0 idle=0 cmd=client\r\nEND\r\n', ['id=1 addr=127.0.0.1:5 age=0 idle=0 cmd=client', 'END']],
  ['CLIENT LIST', 'ERROR CLIENT is disabled on this node\r\n', ['ERROR CLIENT is disabled on this node']],
  ['SCAN', 'ERROR NOAUTH Authentication required\r\n', ['ERROR NOAUTH Authentication required']],
  ['SET k v', 'OK\n', ['OK']],
];

describe('ReplyReader', () => {
  it.each(CASES)('frames the reply to %s, whole and byte by byte', (request, bytes, lines) => {
    const whole = new ReplyReader();
    whole.expect(request);
    expect(whole.push(bytes)).toEqual([lines]);
    expect(whole.pending).toBe(0);
    const bytewise = new ReplyReader();
    bytewise.expect(request);
    const got: string[][] = [];
    for (const ch of bytes) got.push(...bytewise.push(ch));
    expect(got).toEqual([lines]);
  });

  it('hands back pipelined replies in request order', () => {
    const r = new ReplyReader();
    for (const [request] of CASES) r.expect(request);
    expect(r.pending).toBe(CASES.length);
    expect(r.push(CASES.map(([, bytes]) => bytes).join(''))).toEqual(CASES.map(([, , lines]) => lines));
  });

  it('refuses a reply to no request, and a line past its limit', () => {
    expect(() => new ReplyReader().push('OK\r\n')).toThrow(/reply to no request/);
    const r = new ReplyReader(16);
    r.expect('GET a');
    expect(() => r.push('VALUE '.padEnd(40, 'x'))).toThrow(/longer than 16 bytes/);
  });

  it('never throws anything but its own errors on random input', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom('GET a', 'SCAN', 'MGET a b', 'STATS', 'CLIENT LIST')), fc.string(), (requests, input) => {
        const r = new ReplyReader(1024);
        for (const q of requests) r.expect(q);
        try {
          r.push(input);
        } catch (err) {
          expect((err as Error).name).toBe('ProtocolError');
        }
      }),
      { seed: 11, numRuns: 500 },
    );
  });
});
