import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ProtocolError } from '../../src/errors.js';
import type { Version } from '../../src/hlc.js';
import { TreeHasher } from '../../src/merkle/hash.js';
import { FLAG_TOMBSTONE, KIND, kindFlags, recordItem, recordKeyHashBytes } from '../../src/store/record.js';
import { Store } from '../../src/store/store.js';
import { increment } from '../../src/store/operations.js';
import { encodeState, plainState, stateOf, type RecordState } from '../../src/store/state.js';
import type { CopiedRecords } from '../../src/store/types.js';
import { silent, tempDir } from '../helpers.js';

const b = (s: string): Buffer => Buffer.from(s);
const limits = { maxKeyBytes: 256, maxValueBytes: 1024 };
const hasher = new TreeHasher('');

function openStore(nodeId = 'n1'): Store {
  const store = Store.open({ path: join(tempDir(), 'db'), nodeId, maxClockSkewMs: 60_000, tombstoneGraceSeconds: 86_400, logger: silent });
  onTestFinished(() => store.close());
  return store;
}

interface Copied {
  readonly key: Buffer;
  readonly state: RecordState;
}

/** Records laid out one after another in one buffer, read in place: as a stream frame hands them over. */
class Laid implements CopiedRecords {
  readonly buf: Buffer;
  keyStart = 0;
  keyEnd = 0;
  flags = 0;
  wall = 0;
  counter = 0;
  node = '';
  bodyStart = 0;
  bodyEnd = 0;
  keyHashAt = 0;
  itemAt = 0;
  private i = -1;
  private readonly fields: { key: [number, number]; flags: number; epoch: Version; body: [number, number]; keyHashAt: number; itemAt: number }[] = [];

  constructor(records: readonly Copied[]) {
    const parts: Buffer[] = [];
    let at = 0;
    const put = (part: Buffer): [number, number] => {
      parts.push(part);
      at += part.length;
      return [at - part.length, at];
    };
    for (const { key, state } of records) {
      const { flags, body } = encodeState(state);
      const item = Buffer.from(hasher.item(key, state.epoch, flags, body), 'latin1');
      const keyHash = hasher.keyHash(key);
      const hash = Buffer.alloc(8);
      hash.writeUInt32BE(keyHash.hi, 0);
      hash.writeUInt32BE(keyHash.lo, 4);
      // Noise between the fields: nothing may be read from outside them.
      put(Buffer.from([0xee]));
      const k = put(key);
      const bd = put(body);
      const keyHashAt = put(hash)[0];
      const itemAt = put(item)[0];
      this.fields.push({ key: k, flags, epoch: state.epoch, body: bd, keyHashAt, itemAt });
    }
    this.buf = Buffer.concat(parts);
  }

  next(): boolean {
    const f = this.fields[++this.i];
    if (f === undefined) return false;
    [this.keyStart, this.keyEnd] = f.key;
    [this.bodyStart, this.bodyEnd] = f.body;
    this.flags = f.flags;
    this.wall = f.epoch.wall;
    this.counter = f.epoch.counter;
    this.node = f.epoch.node;
    this.keyHashAt = f.keyHashAt;
    this.itemAt = f.itemAt;
    return true;
  }
}

/** Every record of a store as (key, record bytes), pending writes included. */
function contents(store: Store, keys: readonly string[]): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const k of keys) out[k] = store.read(b(k)).value?.toString('hex');
  return out;
}

describe('Store.applyCopied (copy.ts)', () => {
  it('stores what applyRemote stores, with the same hashes, counts and root, whatever the store already holds', async () => {
    const now = Date.now();
    const v = (wall: number, counter = 0, node = 'n2'): Version => ({ wall, counter, node });
    const keys = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'];
    // What each replica holds before: some keys in LMDB, some pending, newer or older than the copy.
    const prepare = async (store: Store): Promise<void> => {
      void store.applyRemote(b('b'), plainState(v(now + 10), b('newer here')));
      void store.applyRemote(b('d'), plainState(v(now - 10), b('older here')));
      void store.applyRemote(b('f'), plainState(v(now), undefined));
      await store.settled();
      void store.applyRemote(b('g'), plainState(v(now + 10), b('pending, newer')));
      void store.applyRemote(b('h'), plainState(v(now - 10), b('pending, older')));
    };
    const copy: Copied[] = [
      { key: b('a'), state: plainState(v(now), b('A')) },
      { key: b('b'), state: plainState(v(now), b('B')) },
      { key: b('c'), state: plainState(v(now), undefined) },
      { key: b('d'), state: plainState(v(now), b('D')) },
      { key: b('e'), state: plainState(v(now, 3), b('E')) },
      // Out of key order: the gap found for 'e' says nothing of 'b' or 'f'.
      { key: b('f'), state: plainState(v(now, 1), b('F')) },
      { key: b('b'), state: plainState(v(now + 20), b('B2')) },
      { key: b('g'), state: plainState(v(now), b('G')) },
      { key: b('h'), state: plainState(v(now), b('H')) },
      { key: b('i'), state: { epoch: v(now), flags: kindFlags(KIND.counter), expiry: undefined, payload: counterPayload() } },
    ];
    const viaCopy = openStore();
    const viaRemote = openStore();
    await prepare(viaCopy);
    await prepare(viaRemote);
    const result = viaCopy.applyCopied(new Laid(copy), limits);
    let applied = 0;
    for (const { key, state } of copy) if (viaRemote.applyRemote(key, state) !== undefined) applied++;
    expect(result.applied).toBe(applied);
    expect(result.after).toBeNull();
    expect(contents(viaCopy, keys)).toEqual(contents(viaRemote, keys));
    expect(viaCopy.rootHash()).toEqual(viaRemote.rootHash());
    expect([viaCopy.size, viaCopy.tombstoneCount]).toEqual([viaRemote.size, viaRemote.tombstoneCount]);
    expect(viaCopy.readValue(b('b')).value?.toString()).toBe('B2');
    expect(viaCopy.readValue(b('g')).value?.toString()).toBe('pending, newer');
    expect(viaCopy.readValue(b('h')).value?.toString()).toBe('H');
    // And once in LMDB, the same records, indexed by key hash.
    await viaCopy.settled();
    await viaRemote.settled();
    expect(contents(viaCopy, keys)).toEqual(contents(viaRemote, keys));
    const entries = (s: Store): string[] => s.ranges.recordsUnder(0, 0).map((e) => `${e.key.toString()}:${recordItem(e.rec)}`);
    expect(entries(viaCopy)).toEqual(entries(viaRemote));
  });

  it('keeps the hashes it was sent: the copy of a store has its root', async () => {
    const source = openStore('n2');
    for (let i = 0; i < 300; i++) void source.set(b(`key:${i}`), b(`value ${i}`));
    void source.delete(b('key:7'));
    await source.settled();
    const records: Copied[] = source.ranges.recordsUnder(0, 0).map((e) => ({ key: e.key, state: stateOf(e.rec) }));
    const copy = openStore();
    expect(copy.applyCopied(new Laid(records), limits).applied).toBe(300);
    expect(copy.rootHash()).toEqual(source.rootHash());
    await copy.settled();
    for (const e of source.ranges.recordsUnder(0, 0)) {
      expect(recordKeyHashBytes(copy.read(e.key).value as Buffer)).toEqual(recordKeyHashBytes(e.rec));
    }
  });

  it('checks every record as a client write is checked, and refuses what may bring back a purged key', async () => {
    const now = Date.now();
    const store = openStore();
    const bad: Copied[] = [
      { key: b('has space'), state: plainState({ wall: now, counter: 0, node: 'n2' }, b('v')) },
      { key: b('big'), state: plainState({ wall: now, counter: 0, node: 'n2' }, Buffer.alloc(limits.maxValueBytes + 1)) },
      { key: b('dead'), state: { epoch: { wall: now, counter: 0, node: 'n2' }, flags: FLAG_TOMBSTONE, expiry: undefined, payload: b('body') } },
      { key: Buffer.from([0, 0, 1, 0x61, 0x62]), state: plainState({ wall: now, counter: 0, node: 'n2' }, b('not a member record')) },
    ];
    for (const rec of bad) expect(() => store.applyCopied(new Laid([rec]), limits)).toThrow(ProtocolError);
    expect(store.size).toBe(0);

    void store.delete(b('gone'));
    await store.purgeTombstones(Date.now() + 1);
    const old = store.applyCopied(new Laid([{ key: b('gone'), state: plainState({ wall: now - 1000, counter: 0, node: 'n2' }, b('zombie')) }]), limits);
    expect(old.applied).toBe(0);
    expect(store.refusedPurged).toBe(1);
    expect(store.readValue(b('gone')).value).toBeUndefined();
  });

  it('agrees with applyRemote on random records over random stores', async () => {
    const now = Date.now();
    const arb = fc.array(
      fc.record({ key: fc.constantFrom('a', 'b', 'c', 'd', 'e'), wall: fc.integer({ min: 0, max: 3 }), node: fc.constantFrom('n2', 'n3'), dead: fc.boolean(), where: fc.constantFrom('copy', 'lmdb', 'pending') }),
      { maxLength: 12 },
    );
    await fc.assert(
      fc.asyncProperty(arb, async (ops) => {
        const stores = [openStore(), openStore()] as const;
        const copy: Copied[] = [];
        for (const phase of ['lmdb', 'pending'] as const) {
          for (const op of ops.filter((o) => o.where === phase)) {
            for (const s of stores) void s.applyRemote(b(op.key), plainState({ wall: now + op.wall, counter: 0, node: op.node }, op.dead ? undefined : b(`${op.key}${op.wall}`)));
          }
          if (phase === 'lmdb') for (const s of stores) await s.settled();
        }
        for (const op of ops.filter((o) => o.where === 'copy')) copy.push({ key: b(op.key), state: plainState({ wall: now + op.wall, counter: 0, node: op.node }, op.dead ? undefined : b(`${op.key}${op.wall}`)) });
        stores[0].applyCopied(new Laid(copy), limits);
        for (const { key, state } of copy) void stores[1].applyRemote(key, state);
        expect(contents(stores[0], ['a', 'b', 'c', 'd', 'e'])).toEqual(contents(stores[1], ['a', 'b', 'c', 'd', 'e']));
        expect(stores[0].rootHash()).toEqual(stores[1].rootHash());
        await Promise.all(stores.map((s) => s.close()));
      }),
      { numRuns: 25, seed: 7 },
    );
  });
});

/** A counter's payload, as INC on node n2 wrote it. */
function counterPayload(): Buffer {
  const source = openStore('n2');
  increment(source, b('c'), 5n);
  return stateOf(source.read(b('c')).value as Buffer).payload;
}
