import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Duplex } from 'node:stream';
import { answerChallenge, PeerProof } from '../../src/antientropy/handshake.js';
import { AE_PROTOCOL_VERSION } from '../../src/antientropy/requests.js';
import { streamServer, type StreamServer } from '../streams.js';

let target: StreamServer;

beforeAll(() => {
  target = streamServer({ maxKeyBytes: 32, maxValueBytes: 256 }, { maxLineBytes: 400, maxBatch: 7 });
});

afterAll(() => target.close());

/**
 * Sends chunks, then half-closes, and returns everything the server sent until it closed. With `peer`,
 * the stream first proves itself an anti-entropy peer (so AE.* commands run), and the handshake's
 * replies are left out of the result.
 */
async function exchange(chunks: Buffer[], peer = false): Promise<string> {
  const s = target.open();
  const received: Buffer[] = [];
  if (peer) await handshake(s);
  s.on('data', (b: Buffer) => received.push(b));
  const done = new Promise<void>((resolve, reject) => {
    s.once('close', resolve);
    s.once('error', reject);
    setTimeout(() => reject(new Error(`no close; got ${Buffer.concat(received).toString().slice(-200)}`)), 10_000);
  });
  for (const c of chunks) s.write(c);
  s.end();
  await done;
  return Buffer.concat(received).toString('utf8');
}

async function handshake(s: Duplex): Promise<void> {
  const proof = new PeerProof('');
  const cn = proof.nonce();
  const readLine = (): Promise<string> =>
    new Promise((resolve) => {
      let got = '';
      const onData = (b: Buffer): void => {
        got += b.toString();
        if (!got.endsWith('\r\n')) return;
        s.off('data', onData);
        resolve(got.trimEnd());
      };
      s.on('data', onData);
    });
  s.write(`AE.HELLO ${cn} ${AE_PROTOCOL_VERSION}\r\n`);
  s.write(`${answerChallenge(proof, cn, await readLine())}\r\n`);
  expect(await readLine()).toBe('OK');
}

async function stillServing(): Promise<void> {
  expect(await exchange([Buffer.from('PING\n')])).toBe('PONG\r\n');
}

describe('fuzzing the server', () => {
  it('survives random byte streams, answering only ERROR lines or replies', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.uint8Array({ maxLength: 64 }),
            fc
              .constantFrom('\n', '\r\n', 'SET ', 'GET ', 'MSET ', 'INC ', 'SETEX ', 'EXPIRE ', 'TTL ', 'PERSIST ', 'HASH', 'AE.DIFF ', 'AE.RANGE ', 'AE.SCAN ', 'AE.GET ', 'AE.PUT ', 'AE.PUT k x ', 'x'.repeat(500))
              .map((s) => Buffer.from(s)),
          ),
          { maxLength: 40 },
        ),
        async (chunks) => {
          const reply = await exchange(chunks.map((c) => Buffer.from(c)));
          for (const line of reply.split('\r\n').slice(0, -1)) expect(line).not.toMatch(/internal error/);
        },
      ),
      { numRuns: 150, seed: 20261122 },
    );
    await stillServing();
  });

  it('answers random internal anti-entropy requests with a reply or an ERROR, never a crash', async () => {
    const b64 = fc.uint8Array({ maxLength: 48 }).map((b) => Buffer.from(b).toString('base64'));
    const small = fc.integer({ min: -2, max: 20 }).map(String);
    const hlc = fc.oneof(fc.constant('0193a0b1c2d3-0000'), fc.constant('ffffffffffff-ffff'), fc.stringMatching(/^[0-9a-f-]{0,18}$/));
    const request = fc.oneof(
      fc.tuple(small, small, small, b64).map(([o, m, w, x]) => `AE.DIFF ${o} ${m} ${w} ${x}`),
      fc.tuple(b64, fc.oneof(fc.constant('-'), fc.stringMatching(/^[0-9a-f]{16}$/), fc.string({ maxLength: 18 }))).map(([f, t]) => `AE.RANGE ${f} ${t}`),
      b64.map((x) => `AE.SCAN ${x}`),
      b64.map((x) => `AE.GET ${x}`),
      fc.tuple(fc.stringMatching(/^\S{0,40}$/), small).map(([f, bits]) => `AE.ROOT ${f} ${bits}`),
      fc
        .tuple(fc.stringMatching(/^[a-z:]{1,12}$/), hlc, fc.stringMatching(/^[a-z0-9-]{0,8}$/), fc.constantFrom('d', 'r', 'b', 'x', ''), fc.string({ maxLength: 40 }))
        .map(([k, h, n, e, v]) => `AE.PUT ${k} ${h} ${n} ${e} ${v}`),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 8 }), async (requests) => {
        const reply = await exchange([Buffer.from(requests.map((r) => `${r}\n`).join(''))], true);
        expect(reply).not.toMatch(/internal error/);
        expect(reply).not.toMatch(/for anti-entropy peers/);
        expect(reply).toMatch(/^(ERROR|OK|ROOT|BIN)/);
      }),
      { numRuns: 200, seed: 4 },
    );
    await stillServing();
  });

  it('agrees with a Map model on random command sequences, however they are chunked', async () => {
    const keys = ['a', 'b', 'user:1', 'user:2', 'ключ'];
    const key = fc.constantFrom(...keys);
    const word = fc.stringMatching(/^[a-z0-9]{1,8}$/);
    const value = fc.oneof(word, fc.integer({ min: -1000, max: 1000 }).map(String), fc.constant('two words'));
    const command = fc.oneof(
      fc.tuple(fc.constant('SET'), key, value),
      fc.tuple(fc.constant('GET'), key),
      fc.tuple(fc.constant('DEL'), key),
      fc.tuple(fc.constantFrom('INC', 'DEC'), key, fc.option(fc.integer({ min: -50, max: 50 }))),
      fc.tuple(fc.constantFrom('APPEND', 'PREPEND'), key, word),
      fc.tuple(fc.constant('MGET'), fc.array(key, { minLength: 1, maxLength: 4 })),
      fc.tuple(fc.constant('MSET'), fc.array(fc.tuple(key, word), { minLength: 1, maxLength: 3 })),
      fc.tuple(fc.constant('EXISTS'), fc.array(key, { minLength: 1, maxLength: 4 })),
      fc.tuple(fc.constantFrom('DBSIZE', 'TRUNCATE')),
      fc.tuple(fc.constant('SCAN'), fc.constantFrom('', 'user:', 'a')),
      fc.tuple(fc.constant('SETEX'), key, word),
      fc.tuple(fc.constantFrom('EXPIRE', 'PERSIST', 'TTL'), key),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(command, { maxLength: 40 }), fc.integer({ min: 1, max: 50 }), async (cmds, chunkSize) => {
        const model: Model = { values: new Map(), expiring: new Set() };
        const lines = ['FLUSHDB'];
        const expected = ['OK'];
        for (const cmd of cmds) {
          const [line, reply] = modelStep(model, cmd);
          lines.push(line);
          expected.push(...reply);
        }
        const bytes = Buffer.from(lines.map((l) => `${l}\r\n`).join(''));
        const chunks: Buffer[] = [];
        for (let i = 0; i < bytes.length; i += chunkSize) chunks.push(bytes.subarray(i, i + chunkSize));
        const reply = await exchange(chunks);
        // TTLs here are 1000 s; a slow run may see 999 left.
        expect(reply.split('\r\n').slice(0, -1).map((l) => (l === 'TTL 999' ? 'TTL 1000' : l))).toEqual(expected);
      }),
      { numRuns: 100, seed: 42 },
    );
  });
});

type ModelCommand =
  | ['SET', string, string]
  | ['GET' | 'DEL', string]
  | ['INC' | 'DEC', string, number | null]
  | ['APPEND' | 'PREPEND', string, string]
  | ['MGET' | 'EXISTS', string[]]
  | ['MSET', [string, string][]]
  | ['DBSIZE' | 'TRUNCATE']
  | ['SCAN', string]
  | ['SETEX', string, string]
  | ['EXPIRE' | 'PERSIST' | 'TTL', string];

/** Values, and the keys that have an expiry (always 1000 s, so none expires during a run). */
interface Model {
  readonly values: Map<string, string>;
  readonly expiring: Set<string>;
}

/** The request line for `cmd` and the reply lines DESIGN.md section 2 prescribes, applied to the model. */
function modelStep(model: Model, cmd: ModelCommand): [string, string[]] {
  const m = model.values;
  const x = model.expiring;
  switch (cmd[0]) {
    case 'SET':
      m.set(cmd[1], cmd[2]);
      x.delete(cmd[1]);
      return [`SET ${cmd[1]} ${cmd[2]}`, ['OK']];
    case 'SETEX':
      m.set(cmd[1], cmd[2]);
      x.add(cmd[1]);
      return [`SETEX ${cmd[1]} 1000 ${cmd[2]}`, ['OK']];
    case 'EXPIRE':
      if (m.has(cmd[1])) x.add(cmd[1]);
      return [`EXPIRE ${cmd[1]} 1000`, [m.has(cmd[1]) ? 'OK' : 'NOT_FOUND']];
    case 'PERSIST':
      x.delete(cmd[1]);
      return [`PERSIST ${cmd[1]}`, [m.has(cmd[1]) ? 'OK' : 'NOT_FOUND']];
    case 'TTL':
      return [`TTL ${cmd[1]}`, [!m.has(cmd[1]) ? 'NOT_FOUND' : x.has(cmd[1]) ? 'TTL 1000' : 'TTL -1']];
    case 'GET': {
      const v = m.get(cmd[1]);
      return [`GET ${cmd[1]}`, [v === undefined ? 'NOT_FOUND' : `VALUE ${v}`]];
    }
    case 'DEL':
      x.delete(cmd[1]);
      return [`DEL ${cmd[1]}`, [m.delete(cmd[1]) ? 'DELETED' : 'NOT_FOUND']];
    case 'INC':
    case 'DEC': {
      const [op, k, n] = cmd;
      const line = n === null ? `${op} ${k}` : `${op} ${k} ${n}`;
      const current = m.get(k) ?? '0';
      if (!/^[+-]?\d+$/.test(current)) return [line, [`ERROR Value for key '${k}' is not a valid number`]];
      const next = BigInt(current) + BigInt(op === 'INC' ? (n ?? 1) : -(n ?? 1));
      m.set(k, next.toString());
      return [line, [`VALUE ${next}`]];
    }
    case 'APPEND':
    case 'PREPEND': {
      const [op, k, v] = cmd;
      const current = m.get(k) ?? '';
      const next = op === 'APPEND' ? current + v : v + current;
      m.set(k, next);
      return [`${op} ${k} ${v}`, [`VALUE ${next}`]];
    }
    case 'MGET': {
      const found = cmd[1].filter((k) => m.has(k)).length;
      if (found === 0) return [`MGET ${cmd[1].join(' ')}`, ['NOT_FOUND']];
      return [
        `MGET ${cmd[1].join(' ')}`,
        [`VALUES ${found}`, ...cmd[1].map((k) => (m.has(k) ? `${k} ${m.get(k)}` : `${k} NOT_FOUND`))],
      ];
    }
    case 'EXISTS':
      return [`EXISTS ${cmd[1].join(' ')}`, [`EXISTS ${cmd[1].filter((k) => m.has(k)).length}`]];
    case 'MSET':
      for (const [k, v] of cmd[1]) {
        m.set(k, v);
        x.delete(k);
      }
      return [`MSET ${cmd[1].flat().join(' ')}`, ['OK']];
    case 'DBSIZE':
      return ['DBSIZE', [`DBSIZE ${m.size}`]];
    case 'TRUNCATE':
      m.clear();
      x.clear();
      return ['TRUNCATE', ['OK']];
    case 'SCAN': {
      const found = [...m.keys()].filter((k) => k.startsWith(cmd[1])).sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
      return [cmd[1] === '' ? 'SCAN' : `SCAN ${cmd[1]}`, [`KEYS ${found.length}`, ...found]];
    }
  }
}
