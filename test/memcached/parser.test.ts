import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { itemSize, McParser, type McLimits, type McRequest } from '../../src/memcached/parser.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/** Parses `input` whole, and again one byte at a time: both must give the same requests. */
function parse(input: string | Buffer, limits?: McLimits): McRequest[] {
  const bytes = typeof input === 'string' ? b(input) : input;
  const whole = new McParser(limits).push(bytes);
  const bytewise = new McParser(limits);
  const one: McRequest[] = [];
  for (let i = 0; i < bytes.length; i++) one.push(...bytewise.push(bytes.subarray(i, i + 1)));
  expect(one).toEqual(whole);
  return whole;
}

const err = (reply: string, noreply = false): McRequest => ({ kind: 'error', reply, noreply });

describe('memcached request parser', () => {
  it('reads storage commands and their data blocks by length, CR and LF inside included', () => {
    expect(parse('set k 5 0 3\r\nabc\r\n')).toEqual([{ kind: 'store', command: 'set', key: b('k'), flags: 5, exptime: 0, data: b('abc'), cas: 0n, noreply: false }]);
    expect(parse('add k 0 -1 4 noreply\r\na\r\nb\r\n')).toEqual([{ kind: 'store', command: 'add', key: b('k'), flags: 0, exptime: -1, data: b('a\r\nb'), cas: 0n, noreply: true }]);
    expect(parse('cas k 4294967295 100 0 18446744073709551615\r\n\r\n')).toEqual([
      { kind: 'store', command: 'cas', key: b('k'), flags: 4294967295, exptime: 100, data: b(''), cas: 18446744073709551615n, noreply: false },
    ]);
    const binary = Buffer.from([0, 1, 2, 13, 10, 255]);
    expect(parse(Buffer.concat([b('set bin 0 0 6\r\n'), binary, b('\r\nget bin\r\n')]))).toEqual([
      { kind: 'store', command: 'set', key: b('bin'), flags: 0, exptime: 0, data: binary, cas: 0n, noreply: false },
      { kind: 'retrieve', command: 'get', keys: [b('bin')], exptime: 0 },
    ]);
    for (const command of ['replace', 'append', 'prepend'] as const) {
      expect(parse(`${command} k 0 0 1\r\nx\r\n`)).toMatchObject([{ kind: 'store', command, data: b('x') }]);
    }
  });

  it('answers malformed storage commands as memcached does, and stays in step', () => {
    // The block is read by its length: a wrong length is a bad chunk, and the rest reads as commands.
    expect(parse('set a 0 0 3\r\nabcd\r\nget a\r\n')).toEqual([err('CLIENT_ERROR bad data chunk'), err('ERROR'), { kind: 'retrieve', command: 'get', keys: [b('a')], exptime: 0 }]);
    expect(parse('set a 0 0 -1\r\n')).toEqual([err('CLIENT_ERROR bad command line format')]);
    expect(parse('set a 0 0 x\r\n')).toEqual([err('CLIENT_ERROR bad command line format')]);
    expect(parse('set a -1 0 1\r\nx\r\n')).toEqual([err('CLIENT_ERROR bad command line format'), err('ERROR')]);
    expect(parse('cas a 0 0 1 -1\r\nx\r\n')).toEqual([err('CLIENT_ERROR bad command line format'), err('ERROR')]);
    expect(parse('set a 0\r\n')).toEqual([err('ERROR')]);
    expect(parse('set a 0 0 1 2 3\r\n')).toEqual([err('ERROR')]);
    expect(parse(`set ${'k'.repeat(251)} 0 0 1\r\n`)).toEqual([err('CLIENT_ERROR bad command line format')]);
    // noreply silences the error too.
    expect(parse('set a 0 0 x noreply\r\n')).toEqual([err('CLIENT_ERROR bad command line format', true)]);
    expect(parse('set a 0 0 2 noreply\r\nabc\r\n')).toEqual([err('CLIENT_ERROR bad data chunk', true), err('ERROR')]);
  });

  it('gathers a large data block from many small chunks, then reads on', () => {
    const value = Buffer.alloc(1024 * 1024 - 100);
    for (let i = 0; i < value.length; i++) value[i] = (i * 7) & 0xff;
    const input = Buffer.concat([b(`set big 3 0 ${value.length}\r\n`), value, b('\r\nget big\r\n')]);
    const p = new McParser();
    const out: McRequest[] = [];
    for (let i = 0; i < input.length; i += 1000) out.push(...p.push(input.subarray(i, i + 1000)));
    expect(out).toHaveLength(2);
    expect(out[0]).toMatchObject({ kind: 'store', key: b('big'), flags: 3 });
    expect((out[0] as { data: Buffer }).data.equals(value)).toBe(true);
    expect(out[1]).toEqual({ kind: 'retrieve', command: 'get', keys: [b('big')], exptime: 0 });
  });

  it('skips a data block over the size limit whole, answering SERVER_ERROR object too large for cache', () => {
    const limits = { maxKeyBytes: 250, maxValueBytes: 10, maxLineBytes: 2048, maxRetrievalLineBytes: 4096, itemSizeMax: 1024 };
    expect(parse(`set big 0 0 11\r\n${'x\r\n'.repeat(3)}xx\r\nversion\r\n`, limits)).toEqual([err('SERVER_ERROR object too large for cache'), { kind: 'version' }]);
    expect(parse('set ok 0 0 10\r\n0123456789\r\n', limits)).toMatchObject([{ kind: 'store', data: b('0123456789') }]);
  });

  it("bounds an item by memcached's item_size_max, counting key and header as memcached 1.6.18 does at -I 1m", () => {
    const fits = (key: string, flags: number, bytes: number): boolean => {
      const out = new McParser().push(Buffer.concat([b(`set ${key} ${flags} 0 ${bytes}\r\n`), Buffer.alloc(bytes, 0x78), b('\r\n')]));
      return out[0]?.kind === 'store';
    };
    // The largest data memcached stored for each key and flags (and refused one byte more).
    for (const [key, flags, most] of [['k', 0, 1_048_516], ['k', 5, 1_048_512], ['kkkkkkkkkk', 0, 1_048_507], ['k'.repeat(250), 1, 1_048_263]] as const) {
      expect(itemSize(key.length, flags, most)).toBe(1024 * 1024);
      expect(fits(key, flags, most)).toBe(true);
      expect(fits(key, flags, most + 1)).toBe(false);
    }
  });

  it('reads retrievals, with many keys and long lines', () => {
    expect(parse('get a b  c\r\ngets a\r\ngat 10 a b\r\ngats -1 a\r\n')).toEqual([
      { kind: 'retrieve', command: 'get', keys: [b('a'), b('b'), b('c')], exptime: 0 },
      { kind: 'retrieve', command: 'gets', keys: [b('a')], exptime: 0 },
      { kind: 'retrieve', command: 'gat', keys: [b('a'), b('b')], exptime: 10 },
      { kind: 'retrieve', command: 'gats', keys: [b('a')], exptime: -1 },
    ]);
    const keys = Array.from({ length: 500 }, (_, i) => `key:${i}`);
    const [long] = parse(`get ${keys.join(' ')}\r\n`);
    expect(long).toMatchObject({ kind: 'retrieve', command: 'get' });
    expect((long as { keys: Buffer[] }).keys.map(String)).toEqual(keys);
    expect(parse('get\r\ngets\r\ngat\r\n')).toEqual([err('ERROR'), err('ERROR'), err('ERROR')]);
    // An exptime and no key: memcached answers END.
    expect(parse('gat 1\r\n')).toEqual([{ kind: 'retrieve', command: 'gat', keys: [], exptime: 1 }]);
    expect(parse('gat x a\r\n')).toEqual([err('CLIENT_ERROR invalid exptime argument')]);
    expect(parse(`get ${'a'.repeat(251)}\r\n`)).toEqual([err('CLIENT_ERROR bad command line format')]);
  });

  it('reads delete, incr/decr, touch, flush_all, version, verbosity, stats and quit', () => {
    expect(parse('delete a\r\ndelete a 0\r\ndelete a noreply\r\ndelete a 5\r\ndelete\r\n')).toEqual([
      { kind: 'delete', key: b('a'), noreply: false },
      { kind: 'delete', key: b('a'), noreply: false },
      { kind: 'delete', key: b('a'), noreply: true },
      err('CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]'),
      err('ERROR'),
    ]);
    expect(parse('incr n 5\r\ndecr n 18446744073709551615 noreply\r\nincr n x\r\nincr n 18446744073709551616\r\nincr n\r\n')).toEqual([
      { kind: 'arith', command: 'incr', key: b('n'), delta: 5n, noreply: false },
      { kind: 'arith', command: 'decr', key: b('n'), delta: 18446744073709551615n, noreply: true },
      err('CLIENT_ERROR invalid numeric delta argument'),
      err('CLIENT_ERROR invalid numeric delta argument'),
      err('ERROR'),
    ]);
    expect(parse('touch a 100\r\ntouch a x\r\ntouch a 1 noreply\r\n')).toEqual([
      { kind: 'touch', key: b('a'), exptime: 100, noreply: false },
      err('CLIENT_ERROR invalid exptime argument'),
      { kind: 'touch', key: b('a'), exptime: 1, noreply: true },
    ]);
    expect(parse('flush_all\r\nflush_all 10\r\nflush_all -1\r\nflush_all noreply\r\nflush_all x\r\n')).toEqual([
      { kind: 'flush_all', delay: 0, noreply: false },
      { kind: 'flush_all', delay: 10, noreply: false },
      { kind: 'flush_all', delay: 0, noreply: false },
      { kind: 'flush_all', delay: 0, noreply: true },
      err('CLIENT_ERROR invalid exptime argument'),
    ]);
    expect(parse('version\r\nverbosity 1\r\nverbosity 1 noreply\r\nverbosity\r\nstats\r\nstats items\r\nquit\r\n')).toEqual([
      { kind: 'version' },
      { kind: 'verbosity', noreply: false },
      { kind: 'verbosity', noreply: true },
      err('ERROR'),
      { kind: 'stats', args: [] },
      { kind: 'stats', args: ['items'] },
      { kind: 'quit' },
    ]);
  });

  it('takes version, quit and verbosity as memcached 1.6.18 does, extra words and all', () => {
    expect(parse('version foo bar\r\nverbosity noreply\r\nverbosity x\r\nverbosity 1 foo\r\nverbosity 1 2 3\r\nstats noreply\r\nquit foo bar\r\n')).toEqual([
      { kind: 'version' },
      err('CLIENT_ERROR bad command line format', true),
      err('CLIENT_ERROR bad command line format'),
      { kind: 'verbosity', noreply: false },
      err('ERROR'),
      { kind: 'stats', args: ['noreply'] },
      { kind: 'quit' },
    ]);
  });

  it('is case-sensitive and answers anything else with ERROR, an empty line included', () => {
    expect(parse('SET a 0 0 1\r\nx\r\n\r\nbogus\n')).toEqual([err('ERROR'), err('ERROR'), err('ERROR'), err('ERROR')]);
  });

  it('closes on a command line too long to be one; a retrieval may run longer', () => {
    const limits = { maxKeyBytes: 250, maxValueBytes: 1024, maxLineBytes: 64, maxRetrievalLineBytes: 256, itemSizeMax: 2048 };
    expect(parse('x'.repeat(65), limits)).toEqual([{ kind: 'close', reply: undefined }]);
    expect(parse('x'.repeat(64), limits)).toEqual([]);
    expect(parse(`get ${'a '.repeat(60)}`, limits)).toEqual([]);
    expect(parse(`get ${'a '.repeat(200)}`, limits)).toEqual([{ kind: 'close', reply: undefined }]);
    const p = new McParser(limits);
    expect(p.push(b('x'.repeat(100)))).toEqual([{ kind: 'close', reply: undefined }]);
    expect(p.push(b('\r\nversion\r\n'))).toEqual([]);
  });

  it('never throws, and never holds more than a line or a block, on random input', () => {
    const limits = { maxKeyBytes: 250, maxValueBytes: 64, maxLineBytes: 128, maxRetrievalLineBytes: 512, itemSizeMax: 1024 };
    const word = fc.constantFrom('set', 'add', 'cas', 'get', 'gets', 'gat', 'delete', 'incr', 'touch', 'flush_all', 'noreply', '0', '1', '-1', '5', 'k', ' ', '\r\n', '\n', 'x', '99999999999');
    fc.assert(
      fc.property(fc.array(fc.oneof(word, fc.string({ maxLength: 8 })), { maxLength: 60 }), fc.integer({ min: 1, max: 16 }), (words, step) => {
        const input = b(words.join(' '));
        const p = new McParser(limits);
        for (let i = 0; i < input.length; i += step) {
          for (const req of p.push(input.subarray(i, i + step))) {
            expect(req.kind).toMatch(/^(store|retrieve|delete|arith|touch|flush_all|version|verbosity|stats|quit|error|close)$/);
            if (req.kind === 'store') expect(req.data.length).toBeLessThanOrEqual(64);
          }
        }
      }),
      { seed: 12, numRuns: 1000 },
    );
  });
});
