import { createServer, type AddressInfo, type Socket } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it, onTestFinished } from 'vitest';
import { plainState } from '../../src/store/state.js';
import type { Version } from '../../src/hlc.js';

const plain = (key: string, version: Version, value: Buffer | undefined) => ({ key: Buffer.from(key), state: plainState(version, value) });
import type { DiffEntry } from '../../src/antientropy/diff.js';
import { PeerClient } from '../../src/antientropy/peer.js';
import { MAX_FRAME, MAX_REPLY_LINE, ReplyParser, type Reply } from '../../src/antientropy/replies.js';
import {
  getLine,
  helloLine,
  diffLine,
  parseChallenge,
  rangeLine,
  parseRootReply,
  proveLine,
  putLine,
  rootLine,
  challengeLine,
  rootReplyLine,
} from '../../src/antientropy/requests.js';
import { PARSERS } from '../../src/commands/index.js';
import { ProtocolError } from '../../src/errors.js';
import { decodeRequest } from '../../src/protocol/decode.js';
import { LINE_TOO_LONG, LineReader } from '../../src/protocol/lines.js';

const limits = { maxKeyBytes: 64, maxValueBytes: 256 };

/** Frames `bytes` as the server does (LineReader) in the given pieces, and decodes each line. */
function serverSide(bytes: Buffer, pieces: Buffer[]): unknown[] {
  expect(Buffer.concat(pieces)).toEqual(bytes);
  const reader = new LineReader(64 * 1024);
  const out: unknown[] = [];
  for (const piece of pieces) {
    reader.push(piece);
    for (let line = reader.next(); line !== undefined; line = reader.next()) {
      if (line === LINE_TOO_LONG) throw new Error('overflow');
      out.push(decodeRequest(line, PARSERS, limits));
    }
  }
  return out;
}

/** Splits `bytes` at the given cut points. */
function cut(bytes: Buffer, at: number[]): Buffer[] {
  const points = [...new Set(at.map((a) => a % (bytes.length + 1)))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    out.push(bytes.subarray(from, p));
    from = p;
  }
  out.push(bytes.subarray(from));
  return out;
}

const byteByByte = (b: Buffer): Buffer[] => [...b].map((x) => Buffer.from([x]));

describe('anti-entropy requests (one encoder, one parser)', () => {
  const hex = (n: number): string => 'ab'.repeat(n);
  const version = { wall: 0x0193a0b1c2d3, counter: 9, node: 'node-é' };
  const diffEntries: DiffEntry[] = [
    { kind: 'hashes', depth: 1, index: 15, levels: 2, width: 1, windows: Buffer.alloc(256, 9) },
    { kind: 'list', depth: 6, index: 0x040404, entries: [{ keyHash: Buffer.alloc(8, 4), version, item: Buffer.from([5, 6]) }] },
  ];
  const requests: [Buffer, unknown][] = [
    [Buffer.from(`${helloLine(hex(16))}\r\n`), { kind: 'ae.hello', cn: hex(16) }],
    [Buffer.from(`${proveLine(hex(32))}\r\n`), { kind: 'ae.prove', proof: hex(32) }],
    [Buffer.from(`${rootLine('f00d', 16)}\r\n`), { kind: 'ae.root', fingerprint: 'f00d', bits: 16 }],
    [Buffer.from(`${diffLine(7, 32, 1, diffEntries)}\r\n`), { kind: 'ae.diff', offset: 7, listMax: 32, width: 1, entries: diffEntries }],
    [Buffer.from(`${getLine([Buffer.alloc(8, 1), Buffer.alloc(8, 0xff)])}\r\n`), { kind: 'ae.get', keyHashes: [Buffer.alloc(8, 1), Buffer.alloc(8, 0xff)] }],
    [Buffer.from(`${rangeLine(Buffer.from('0011223344556677key:é', 'latin1'), Buffer.alloc(8, 0xfe))}\r\n`), { kind: 'ae.range', from: Buffer.from('0011223344556677key:é', 'latin1'), to: Buffer.alloc(8, 0xfe) }],
    [Buffer.from(`${rangeLine(Buffer.alloc(8), undefined)}\r\n`), { kind: 'ae.range', from: Buffer.alloc(8), to: undefined }],
    [putLine(plain('k:1', version, undefined)), { kind: 'ae.put', ...plain('k:1', version, undefined) }],
    [putLine(plain('k:2', version, Buffer.from('plain text'))), { kind: 'ae.put', ...plain('k:2', version, Buffer.from('plain text')) }],
    [putLine(plain('k:3', version, Buffer.from(' lines\r\nand \xff '))), { kind: 'ae.put', ...plain('k:3', version, Buffer.from(' lines\r\nand \xff ')) }],
  ];

  it('parse what they encode, whole, byte by byte and cut anywhere', () => {
    const all = Buffer.concat(requests.map(([b]) => b));
    const expected = requests.map(([, r]) => r);
    expect(serverSide(all, [all])).toEqual(expected);
    expect(serverSide(all, byteByByte(all))).toEqual(expected);
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 20 }), (at) => {
        expect(serverSide(all, cut(all, at))).toEqual(expected);
      }),
      { numRuns: 200, seed: 9 },
    );
  });

  it('carry any record through AE.PUT unchanged', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: fc.constantFrom('a', 'Z', '9', ':', 'é', '𝄞'), minLength: 1, maxLength: 10 }),
        fc.option(fc.uint8Array({ maxLength: 64 }), { nil: undefined }),
        (key, value) => {
          const rec = plain(key, version, value === undefined ? undefined : Buffer.from(value));
          const [req] = serverSide(putLine(rec), [putLine(rec)]);
          expect(req).toEqual({ kind: 'ae.put', ...rec });
        },
      ),
      { numRuns: 300, seed: 5 },
    );
  });

  it('read the text replies they write, and refuse others', () => {
    expect(parseChallenge(challengeLine(hex(16), hex(32)))).toEqual({ sn: hex(16), sp: hex(32) });
    for (const bad of ['', 'AE.CHALLENGE', `AE.CHALLENGE ${hex(16)}`, `AE.CHALLENGE ${hex(15)} ${hex(32)}`, `AE.CHALLENGE ${hex(16)} ${hex(32)} x`, `OK ${hex(16)} ${hex(32)}`]) {
      expect(parseChallenge(bad)).toBeUndefined();
    }
    expect(parseRootReply(rootReplyLine('00ff', 'node-1'))).toEqual({ root: '00ff', peer: 'node-1' });
    for (const bad of ['ROOT', 'ROOT 00ff', 'ROOT zz node-1', 'ROOT 00ff node-1 extra', 'ROOTS 00ff n', `ROOT 00 ${'n'.repeat(256)}`]) {
      expect(() => parseRootReply(bad)).toThrow(ProtocolError);
    }
  });
});

describe('anti-entropy reply framing (replies.ts)', () => {
  const frame = (b: Buffer): Buffer => Buffer.concat([Buffer.from(`BIN ${b.length}\r\n`), b, Buffer.from('\r\n')]);
  const payload = Buffer.from([0x0a, 0x0d, 0x00, 0xff, 0x42, 0x0a]);
  const stream = Buffer.concat([Buffer.from('ROOT ab n1\r\n'), frame(payload), frame(Buffer.alloc(0)), Buffer.from('OK\r\nERROR no\n'), frame(Buffer.alloc(600, 7))]);
  const expected: Reply[] = [{ line: 'ROOT ab n1' }, { bin: payload }, { bin: Buffer.alloc(0) }, { line: 'OK' }, { line: 'ERROR no' }, { bin: Buffer.alloc(600, 7) }];

  const parseAll = (pieces: Buffer[]): Reply[] => {
    const p = new ReplyParser();
    return pieces.flatMap((piece) => p.push(piece));
  };

  it('splits replies whole, byte by byte and cut anywhere', () => {
    expect(parseAll([stream])).toEqual(expected);
    expect(parseAll(byteByByte(stream))).toEqual(expected);
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 30 }), (at) => {
        expect(parseAll(cut(stream, at))).toEqual(expected);
      }),
      { numRuns: 300, seed: 3 },
    );
  });

  it('refuses malformed frames and overlong lines', () => {
    for (const bad of ['BIN -1\r\n', 'BIN x\r\n', 'BIN 01\r\nx\r\n', `BIN ${MAX_FRAME + 1}\r\n`, 'BIN 2\r\nabXY', 'BIN 1 2\r\n']) {
      expect(() => parseAll([Buffer.from(bad)]), bad).toThrow(ProtocolError);
    }
    expect(() => parseAll([Buffer.alloc(MAX_REPLY_LINE + 1, 0x61)])).toThrow('overlong line');
  });

  it('never throws anything but a ProtocolError on random bytes, cut anywhere', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.array(fc.nat(), { maxLength: 10 }), (bytes, at) => {
        try {
          parseAll(cut(Buffer.from(bytes), at));
        } catch (err) {
          expect(err).toBeInstanceOf(ProtocolError);
        }
      }),
      { numRuns: 500, seed: 4 },
    );
  });
});

describe('PeerClient backpressure', () => {
  it('reports congestion while the peer does not read, and drains once it does', async () => {
    let serverSide: Socket | undefined;
    const server = createServer((s) => {
      serverSide = s;
      s.pause();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    onTestFinished(() => {
      serverSide?.destroy();
      server.close();
    });
    const peer = await PeerClient.open('127.0.0.1', (server.address() as AddressInfo).port, 5000);
    onTestFinished(() => peer.close());
    const line = Buffer.alloc(256 * 1024, 0x61);
    let sent = 0;
    while (!peer.congested && sent < 1000) {
      void peer.send(line).catch(() => {});
      sent++;
    }
    expect(peer.congested).toBe(true);
    // The kernel's buffers filled first; what waits in this process is at most about one line.
    expect(sent).toBeLessThan(1000);
    let drained = false;
    const waiting = peer.drained().then(() => (drained = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(drained).toBe(false);
    serverSide?.resume();
    await waiting;
    expect(peer.congested).toBe(false);
  });
});
