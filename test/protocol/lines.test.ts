import { describe, expect, it } from 'vitest';
import { LINE_TOO_LONG, LineReader } from '../../src/protocol/lines.js';

/** Feeds `input` whole or one byte at a time and collects every line (as strings) or the overflow mark. */
function collect(input: Buffer, maxLine: number, byteByByte: boolean): (string | symbol)[] {
  const reader = new LineReader(maxLine);
  const out: (string | symbol)[] = [];
  const chunks = byteByByte ? [...input].map((b) => Buffer.from([b])) : [input];
  for (const chunk of chunks) {
    reader.push(chunk);
    for (;;) {
      const line = reader.next();
      if (line === undefined) break;
      out.push(line === LINE_TOO_LONG ? line : line.toString('utf8'));
      if (line === LINE_TOO_LONG) return out;
    }
  }
  return out;
}

describe.each([
  ['whole', false],
  ['byte by byte', true],
])('LineReader fed %s', (_name, byteByByte) => {
  it('splits lines and keeps CR for the decoder', () => {
    expect(collect(Buffer.from('GET a\nSET b c\r\n\nPING\n'), 100, byteByByte)).toEqual([
      'GET a',
      'SET b c\r',
      '',
      'PING',
    ]);
  });

  it('holds an unterminated line until its newline comes', () => {
    expect(collect(Buffer.from('GET a\nGET b'), 100, byteByByte)).toEqual(['GET a']);
  });

  it('accepts a line exactly at the limit', () => {
    expect(collect(Buffer.from('x'.repeat(10) + '\n'), 10, byteByByte)).toEqual(['x'.repeat(10)]);
  });

  it('reports a line over the limit, terminated or not', () => {
    expect(collect(Buffer.from('x'.repeat(11) + '\n'), 10, byteByByte)).toEqual([LINE_TOO_LONG]);
    expect(collect(Buffer.from('ok\n' + 'y'.repeat(50)), 10, byteByByte)).toEqual(['ok', LINE_TOO_LONG]);
  });

  it('keeps multi-byte UTF-8 split across chunks intact', () => {
    expect(collect(Buffer.from('SET k héllo wörld ✓\n'), 100, byteByByte)).toEqual(['SET k héllo wörld ✓']);
  });
});

describe('LineReader', () => {
  it('gives the unterminated rest at end of input', () => {
    const reader = new LineReader(100);
    reader.push(Buffer.from('GET a\nGET '));
    expect(reader.next()?.toString()).toBe('GET a');
    reader.push(Buffer.from('b'));
    expect(reader.next()).toBeUndefined();
    expect(reader.hasPartial).toBe(true);
    expect(reader.takePartial().toString()).toBe('GET b');
    expect(reader.hasPartial).toBe(false);
  });

  it('keeps unread lines when pushed again before draining', () => {
    const reader = new LineReader(100);
    reader.push(Buffer.from('A\nB\n'));
    expect(reader.next()?.toString()).toBe('A');
    reader.push(Buffer.from('C\n'));
    expect(reader.next()?.toString()).toBe('B');
    expect(reader.next()?.toString()).toBe('C');
    expect(reader.next()).toBeUndefined();
  });
});
