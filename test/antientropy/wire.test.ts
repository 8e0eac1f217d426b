import { createServer, type Socket } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { plainState } from '../../src/store/state.js';
import { PeerProof } from '../../src/antientropy/handshake.js';
import { putLine } from '../../src/antientropy/requests.js';
import { decodeDiff, encodeDiff, WINDOW, type DiffEntry, type ListedEntry } from '../../src/antientropy/diff.js';
import { decodeRecords, writeRecord, Writer } from '../../src/antientropy/wire.js';
import { ProtocolError } from '../../src/errors.js';
import { formatHlc } from '../../src/hlc.js';
import { LineClient, startTestNode } from '../helpers.js';

const limits = { maxKeyBytes: 512, maxValueBytes: 1024 };

/** An AE.DIFF payload, base64, holding `entries`. */
function b64diff(...entries: DiffEntry[]): string {
  return encodeDiff(entries).toString('base64');
}

/** One record as AE.GET and AE.DIFF answers carry it: key `key`, value `v`, epoch (5, 0, n). */
function recordBytes(key = 'k'): Buffer {
  const w = new Writer();
  writeRecord(w, { key: Buffer.from(key), state: plainState({ wall: 5, counter: 0, node: 'n' }, Buffer.from('v')) });
  return Buffer.from(w.result());
}

const rootHashes = (levels = 1, width = WINDOW): DiffEntry => ({ kind: 'hashes', depth: 0, index: 0, levels, width, windows: Buffer.alloc(16 ** levels * width) });

/**
 * A fake peer that holds the (default) cluster secret: it answers the handshake properly (the proof with
 * `proved`), then calls `then` once for each later request line.
 */
function authenticPeer(s: Socket, then: () => void, proved = 'OK\r\n'): void {
  const proof = new PeerProof('');
  let step = 0;
  let pending = '';
  s.on('data', (chunk: Buffer) => {
    pending += chunk.toString('latin1');
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      const words = line.trim().split(' ');
      if (step === 0 && words[0] === 'AE.HELLO') {
        step = 1;
        const sn = proof.nonce();
        s.write(`AE.CHALLENGE ${sn} ${proof.serverProof(words[1] as string, sn)}\r\n`);
      } else if (step === 1 && words[0] === 'AE.PROVE') {
        step = 2;
        s.write(proved);
      } else {
        then();
      }
    }
  });
}

describe('anti-entropy internal commands', () => {
  it('refuse requests outside their limits with an ERROR line', async () => {
    const node = await startTestNode();
    const c = await LineClient.connect(node.address.port);
    expect(await c.provePeer()).toBe('OK');
    expect(await c.call('AE.ROOT 0000 16')).toBe('ERROR cluster_secret differs from this node: the trees cannot be compared');
    expect(await c.call('AE.ROOT')).toBe('ERROR AE.ROOT command requires a secret fingerprint and the segment bits');
    expect(await c.call(`AE.DIFF 0 4 2 ${b64diff({ kind: 'hashes', depth: 7, index: 0, levels: 2, width: 1, windows: Buffer.alloc(256) })}`)).toBe(
      'ERROR AE.DIFF hashes entry of a wrong depth',
    );
    expect(await c.call(`AE.DIFF 0 4 2 ${b64diff({ kind: 'hashes', depth: 0, index: 0, levels: 1, width: 3, windows: Buffer.alloc(48) })}`)).toBe(
      'ERROR AE.DIFF hashes entry of a wrong window width',
    );
    expect(await c.call(`AE.DIFF 15 4 2 ${b64diff(rootHashes())}`)).toBe('ERROR offset must be 0..14');
    expect(await c.call(`AE.DIFF 0 0 2 ${b64diff(rootHashes())}`)).toBe('ERROR list max must be 1..65536');
    expect(await c.call(`AE.DIFF 0 4 3 ${b64diff(rootHashes())}`)).toBe('ERROR window width must be 1..2');
    expect(await c.call(`AE.DIFF 0 4 ${b64diff(rootHashes())}`)).toMatch(/^ERROR AE.DIFF command requires/);
    const records = Buffer.concat([Buffer.from([0, 0, 0x52, 0, 0, 0, 0, 0, 1]), recordBytes()]);
    expect(await c.call(`AE.DIFF 0 4 2 ${records.toString('base64')}`)).toBe('ERROR AE.DIFF requests carry hashes and listings only');
    expect(await c.call(`AE.DIFF 0 4 2 ${b64diff({ kind: 'hashes', depth: 1, index: 16, levels: 1, width: WINDOW, windows: Buffer.alloc(16 * WINDOW) })}`)).toBe(
      'ERROR AE.DIFF names no such tree node',
    );
    expect(await c.call(`AE.DIFF 0 4 2 ${b64diff()}`)).toBe('ERROR AE.DIFF takes 1..1024 entries');
    expect(await c.call(`AE.DIFF 0 4 2 ${b64diff(...Array.from({ length: 1025 }, () => rootHashes()))}`)).toBe('ERROR AE.DIFF holds too many entries');
    // One listing entry of 1025 empty nodes at depth 3: 1025 entries once decoded.
    const manyNodes = Array.from({ length: 1025 }, (_, i): DiffEntry => ({ kind: 'list', depth: 3, index: i, entries: [] }));
    expect(await c.call(`AE.DIFF 0 4 2 ${b64diff(...manyNodes)}`)).toBe('ERROR AE.DIFF holds too many entries');
    expect(await c.call(`AE.DIFF 0 4 2 ${b64diff({ kind: 'need', keyHashes: [Buffer.alloc(8)] })}`)).toBe('ERROR AE.DIFF requests carry hashes and listings only');
    expect(await c.call('AE.DIFF 0 4 2 AAAAAAA=')).toBe('ERROR truncated anti-entropy reply');
    // Equal replicas: nothing differs, nothing comes back.
    expect(await c.call(`AE.DIFF 0 4 2 ${b64diff(rootHashes(2))}`)).toBe('BIN 2');
    expect(await c.lines(1)).toEqual(['\u0000\u0000']);
    expect(await c.call('AE.GET AAAA')).toBe('ERROR AE.GET takes 1..1024 items of 8 bytes, base64');
    expect(await c.call('AE.PUT k 12-34 n r v')).toBe('ERROR invalid version');
    expect(await c.call(`AE.PUT k ${formatHlc({ wall: 1, counter: 0 })} n x v`)).toMatch(/^ERROR AE.PUT command requires/);
    expect(await c.call(`AE.PUT k ${formatHlc({ wall: 1, counter: 0 })} n d extra`)).toMatch(/^ERROR AE.PUT command requires/);
    expect(await c.call(`AE.PUT k\x01 ${formatHlc({ wall: 1, counter: 0 })} n r v`)).toBe('ERROR invalid key: control characters are not allowed');
    expect(await c.call('PING')).toBe('PONG');
  });

  it('AE.PUT applies what putLine encodes, exactly, and ignores what is older', async () => {
    const node = await startTestNode();
    const c = await LineClient.connect(node.address.port);
    expect(await c.provePeer()).toBe('OK');
    const values = ['plain', 'two  spaces', ' lead', 'trail ', '\ttab', 'crlf\r\nin', 'ünï', Buffer.from([0xff, 0, 1]), ''];
    let wall = Date.now() - 1000;
    for (const [i, v] of values.entries()) {
      const value = Buffer.isBuffer(v) ? v : Buffer.from(v);
      c.send(putLine({ key: Buffer.from(`k${i}`), state: plainState({ wall: wall++, counter: 0, node: 'peer' }, value) }));
      expect(await c.lines(1)).toEqual(['OK']);
      expect(node.store.readValue(Buffer.from(`k${i}`)).value).toEqual(value);
    }
    c.send(putLine({ key: Buffer.from('k0'), state: plainState({ wall: 1, counter: 0, node: 'peer' }, Buffer.from('older')) }));
    expect(await c.lines(1)).toEqual(['OK']);
    expect(await c.call('GET k0')).toBe('VALUE plain');
    c.send(putLine({ key: Buffer.from('k0'), state: plainState({ wall: wall, counter: 0, node: 'peer' }, undefined) }));
    expect(await c.lines(1)).toEqual(['OK']);
    expect(await c.call('GET k0')).toBe('NOT_FOUND');
  });

  it('a peer that sends garbage fails the SYNC, not the node', async () => {
    const node = await startTestNode();
    // Not empty: an empty node would copy the peer's store rather than compare.
    await node.store.set(Buffer.from('k'), Buffer.from('v'));
    // It answers AE.ROOT with a root that differs, then AE.DIFF with a frame too short for its content.
    const replies = [`ROOT ${'0'.repeat(31)}1 liar\r\n`, 'BIN 6\r\n\x00\x00H\x00\x00\x00\r\n'];
    const fake = createServer((s: Socket) => authenticPeer(s, () => s.write(replies.shift() ?? '')));
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    onTestFinished(() => void fake.close());
    const port = (fake.address() as { port: number }).port;
    const c = await LineClient.connect(node.address.port);
    expect(await c.call(`SYNC 127.0.0.1 ${port}`)).toMatch(/^ERROR sync with 127\.0\.0\.1:\d+ failed: truncated anti-entropy reply$/);
    expect(await c.call('PING')).toBe('PONG');
  });
});

describe('a peer that answers the proof with an ERROR', () => {
  it('fails the SYNC, leaving no unhandled rejection behind (it ended the node)', async () => {
    const node = await startTestNode();
    // A peer whose disk is full answers every request with the log's error, the proof included; the
    // exchange's first request (AE.ROOT, sent behind the proof) then fails too.
    const full = 'ERROR cannot append to the write-ahead log: ENOSPC: no space left on device, write\r\n';
    const fake = createServer((s: Socket) => authenticPeer(s, () => s.write(full), full));
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    onTestFinished(() => void fake.close());
    const port = (fake.address() as { port: number }).port;
    const c = await LineClient.connect(node.address.port);
    expect(await c.call(`SYNC 127.0.0.1 ${port}`)).toMatch(/^ERROR sync with 127\.0\.0\.1:\d+ failed: .*ENOSPC.*\(to AE\.PROVE\)/);
    // vitest fails the run on an unhandled rejection; give one the time to surface.
    await new Promise((r) => setTimeout(r, 100));
    expect(await c.call('PING')).toBe('PONG');
  });
});

describe('a peer that goes away mid-exchange', () => {
  it('fails the SYNC with the reason, leaving no unhandled rejection behind', async () => {
    const node = await startTestNode({ 'anti_entropy.segment_bits': '8' });
    for (let i = 0; i < 500; i++) void node.store.set(Buffer.from(`k${i}`), Buffer.from('v'));
    await node.store.settled();
    // Answers AE.ROOT with a different root, then hangs up on the pipelined AE.DIFF.
    let n = 0;
    const fake = createServer((s: Socket) =>
      authenticPeer(s, () => {
        if (n++ === 0) s.write(`ROOT ${'0'.repeat(32)} gone\r\n`);
        else s.destroy();
      }),
    );
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    onTestFinished(() => void fake.close());
    const c = await LineClient.connect(node.address.port);
    const port = (fake.address() as { port: number }).port;
    expect(await c.call(`SYNC 127.0.0.1 ${port}`)).toBe(`ERROR sync with 127.0.0.1:${port} failed: peer closed the connection`);
    expect(await c.call('PING')).toBe('PONG');
  });
  it('while records are being pushed: the root request queued behind them is not left unhandled', async () => {
    const node = await startTestNode();
    for (let i = 0; i < 50; i++) void node.store.set(Buffer.from(`k${i}`), Buffer.from('v'));
    await node.store.settled();
    // A different root; then an empty listing of the whole tree, so every record is pushed; then it
    // hangs up on the first AE.PUT.
    const replies = [`ROOT ${'0'.repeat(32)} gone\r\n`, `BIN 16\r\n\x00\x00L${'\x00'.repeat(11)}\x01\x00\r\n`];
    const fake = createServer((s: Socket) => authenticPeer(s, () => (replies.length > 0 ? s.write(replies.shift() as string, 'latin1') : s.destroy())));
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    onTestFinished(() => void fake.close());
    const c = await LineClient.connect(node.address.port);
    const port = (fake.address() as { port: number }).port;
    expect(await c.call(`SYNC 127.0.0.1 ${port}`)).toMatch(/^ERROR sync with 127\.0\.0\.1:\d+ failed: (peer closed the connection|read ECONNRESET)$/);
    await new Promise((r) => setTimeout(r, 50));
    expect(await c.call('PING')).toBe('PONG');
  });
});

describe('exchanges clients ask for', () => {
  it('are bounded in number: beyond max_concurrent_syncs + 8, SYNC is refused at once', async () => {
    const node = await startTestNode({ 'anti_entropy.max_concurrent_syncs': '1' });
    // A "peer" that accepts and never answers keeps every exchange waiting.
    const sockets: Socket[] = [];
    const silentPeer = createServer((s: Socket) => void sockets.push(s));
    await new Promise<void>((r) => silentPeer.listen(0, '127.0.0.1', r));
    onTestFinished(() => {
      for (const s of sockets) s.destroy();
      silentPeer.close();
    });
    const port = (silentPeer.address() as { port: number }).port;
    const clients = await Promise.all(Array.from({ length: 10 }, () => LineClient.connect(node.address.port)));
    for (const c of clients.slice(0, 9)) c.send(`SYNC 127.0.0.1 ${port}\r\n`);
    await new Promise((r) => setTimeout(r, 200));
    expect(await clients[9]?.call(`SYNC 127.0.0.1 ${port}`)).toBe(`ERROR sync with 127.0.0.1:${port} failed: 9 exchanges in progress already`);
    expect(await clients[9]?.call('PING')).toBe('PONG');
    // Stopping the node ends the waiting exchanges with an error each.
    await node.stop();
    for (const c of clients.slice(0, 9)) expect((await c.lines(1))[0]).toMatch(/^ERROR sync with .* failed: /);
  });
});

describe('anti-entropy wire decoding', () => {
  it('reads every AE.DIFF entry it writes, and rejects truncated and ill-formed ones', () => {
    const listed = (keyHash: string, wall: number, counter = 0, node = 'n-é'): ListedEntry => ({
      keyHash: Buffer.from(keyHash, 'hex'),
      version: { wall, counter, node },
      item: Buffer.from([wall & 0xff, 2]),
    });
    const entries: DiffEntry[] = [
      rootHashes(2),
      rootHashes(2, 1),
      { kind: 'hashes', depth: 3, index: 4095, levels: 1, width: WINDOW, windows: Buffer.alloc(16 * WINDOW, 7) },
      { kind: 'list', depth: 8, index: 0x01010101, entries: [listed('0101010101010101', 2 ** 47, 65535)] },
      // A run of listings of one depth in index order: one entry on the wire. Depth 5 is odd: the
      // fifth nibble of each key hash travels, and must agree with the node's index.
      { kind: 'list', depth: 5, index: 3, entries: [] },
      { kind: 'list', depth: 5, index: 0xabcde, entries: [listed('abcde0ffeeddccbb', 1), listed('abcdefffeeddccbb', 2 ** 48 - 1, 7, 'other')] },
      { kind: 'list', depth: 5, index: 0xfffff, entries: [listed('ffffff0000000000', 1_700_000_000_000)] },
      // Out of order: a new entry.
      { kind: 'list', depth: 5, index: 0x00001, entries: [listed('0000100000000001', 0)] },
      { kind: 'pull', keyHashes: [Buffer.alloc(8, 2), Buffer.alloc(8, 3)] },
      { kind: 'need', keyHashes: [] },
    ];
    const payload = encodeDiff(entries);
    expect(decodeDiff(payload)).toEqual(entries);
    // Byte by byte: a run of two listings at depth 2 after an empty node table.
    const run = encodeDiff([
      { kind: 'list', depth: 2, index: 0x12, entries: [listed('1234567890abcdef', 1000, 1, 'n')] },
      { kind: 'list', depth: 2, index: 0x20, entries: [] },
    ]);
    expect(run.toString('hex')).toBe(
      ['0001', '016e', '4c', '02', '00000012', '0000000003e8', '02', '01', '34567890abcdef', '00', '01', '00', 'e802', '0d', '00'].join(''),
    );
    // Cut anywhere: a shorter valid payload, or a ProtocolError; never anything else.
    for (let n = 0; n < payload.length; n++) {
      try {
        expect(decodeDiff(payload.subarray(0, n)).length).toBeLessThan(entries.length);
      } catch (err) {
        expect(err).toBeInstanceOf(ProtocolError);
      }
    }
    expect(() => decodeDiff(Buffer.from([0, 0, 0x5a, 0, 0, 0, 0, 0]))).toThrow('malformed AE.DIFF entry');
    // Listings at depth 1 of node 0, one record each: key hash (8 bytes), wall gap, counter, node id index, window.
    const listing = (keyHash: number[], rest: number[]): Buffer =>
      Buffer.concat([Buffer.from([0, 0, 0x4c, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 1, 1]), Buffer.from(keyHash), Buffer.from(rest), Buffer.alloc(WINDOW)]);
    expect(() => decodeDiff(listing([0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 3]))).toThrow('unknown node id');
    // A key hash under node 1 listed under node 0; an epoch before 1970; a counter over 16 bits.
    expect(() => decodeDiff(listing([0x10, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0]))).toThrow('AE.DIFF lists a record under the wrong node');
    expect(() => decodeDiff(listing([0, 0, 0, 0, 0, 0, 0, 0], [10, 0, 0]))).toThrow('AE.DIFF lists an epoch before 1970');
    expect(() => decodeDiff(listing([0, 0, 0, 0, 0, 0, 0, 0], [0, 0x80, 0x80, 4, 0]))).toThrow('AE.DIFF lists an epoch counter over 65535');
    // More than a payload may make this node build: entries, or records named in all.
    const nodes = Array.from({ length: 20 }, (_, i): DiffEntry => ({ kind: 'list', depth: 2, index: i, entries: [] }));
    expect(decodeDiff(encodeDiff(nodes), undefined, 20)).toHaveLength(20);
    expect(() => decodeDiff(encodeDiff(nodes), undefined, 19)).toThrow('AE.DIFF holds too many entries');
    const named = Array.from({ length: 17 }, (): DiffEntry => ({ kind: 'need', keyHashes: Array.from({ length: 65_536 }, () => Buffer.alloc(8)) }));
    expect(() => decodeDiff(encodeDiff(named))).toThrow('AE.DIFF names over 1048576 records');
    // More nodes than the depth has after the first.
    expect(() => decodeDiff(Buffer.from([0, 0, 0x4c, 1, 0, 0, 0, 15, 0, 0, 0, 0, 0, 0, 2, 0]))).toThrow('AE.DIFF lists more nodes than its depth has');
  });

  it('reads the records an AE.DIFF answer carries, checked like client input; a request may not carry them', () => {
    const payload = Buffer.concat([Buffer.from([0, 0, 0x52, 0, 0, 0, 0, 0, 1]), recordBytes()]);
    expect(decodeDiff(payload, limits)).toEqual([{ kind: 'records', records: [{ key: Buffer.from('k'), state: plainState({ wall: 5, counter: 0, node: 'n' }, Buffer.from('v')) }] }]);
    expect(encodeDiff(decodeDiff(payload, limits))).toEqual(payload);
    expect(() => decodeDiff(payload)).toThrow('AE.DIFF requests carry hashes and listings only');
    const tooLong = Buffer.concat([Buffer.from([0, 0, 0x52, 0, 0, 0, 0, 0, 1]), recordBytes('k'.repeat(600))]);
    expect(() => decodeDiff(tooLong, limits)).toThrow(ProtocolError);
  });

  it('checks records from a peer like client input', () => {
    const w = new Writer();
    w.u32(1);
    writeRecord(w, { key: Buffer.from('good'), state: plainState({ wall: 5, counter: 1, node: 'n' }, Buffer.from('v')) });
    const { served, records } = decodeRecords(w.result(), limits);
    expect(served).toBe(1);
    expect(records).toEqual([{ key: Buffer.from('good'), state: plainState({ wall: 5, counter: 1, node: 'n' }, Buffer.from('v')) }]);
    for (const bad of [
      { key: Buffer.from('has space'), node: 'n', value: Buffer.from('v') },
      { key: Buffer.from('k'), node: 'bad node', value: Buffer.from('v') },
      { key: Buffer.from('k'), node: 'n', value: Buffer.alloc(2000) },
      { key: Buffer.alloc(600, 0x61), node: 'n', value: Buffer.from('v') },
    ]) {
      const wb = new Writer();
      wb.u32(1);
      writeRecord(wb, { key: bad.key, state: plainState({ wall: 5, counter: 1, node: bad.node }, bad.value) });
      expect(() => decodeRecords(wb.result(), limits)).toThrow(ProtocolError);
    }
  });
});
