import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RecordCounts } from '../../src/store/counts.js';
import { encodeKeyedRecord, encodeRecord, FLAG_TOMBSTONE, KIND, keyedRecordOffset, kindFlags, type StoredRecord } from '../../src/store/record.js';
import { encodeState } from '../../src/store/state.js';

const NOW = 1_700_000_000_000;
const epoch = { wall: NOW - 1000, counter: 0, node: 'n1' };

interface Shape {
  readonly tombstone?: boolean;
  /** Expiry register's time: 0 is PERSIST's (a register that does not expire); undefined, no register. */
  readonly expiresAt?: number;
  readonly kind?: 'plain' | 'set';
}

function fields(shape: Shape = {}): StoredRecord {
  const { flags, body } = encodeState({
    epoch,
    flags: shape.tombstone === true ? FLAG_TOMBSTONE : kindFlags(shape.kind === 'set' ? KIND.set : KIND.plain),
    expiry: shape.expiresAt === undefined ? undefined : { at: shape.expiresAt, version: epoch },
    payload: shape.tombstone === true || shape.kind === 'set' ? Buffer.alloc(0) : Buffer.from('value'),
  });
  return { ...epoch, flags, body, item: '\0'.repeat(16), keyHash: { hi: 1, lo: 2 } };
}

const rec = (shape: Shape = {}): Buffer => encodeRecord(fields(shape));

function figures(c: RecordCounts): { live: number; tombstones: number; expiring: number; total: number } {
  return { live: c.live, tombstones: c.tombstones, expiring: c.expiringCount, total: c.total };
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(NOW);
});

afterEach(() => {
  vi.useRealTimers();
});

describe('RecordCounts', () => {
  it('counts a live record and a tombstone, and takes each back', () => {
    const c = new RecordCounts(() => false, () => 10);
    c.count('a', rec(), 0, 1, 10);
    c.count('b', rec({ tombstone: true }), 0, 1, 10);
    expect(figures(c)).toEqual({ live: 1, tombstones: 1, expiring: 0, total: 2 });
    c.count('a', rec(), 0, -1, 10);
    expect(figures(c)).toEqual({ live: 0, tombstones: 1, expiring: 0, total: 1 });
    c.count('b', rec({ tombstone: true }), 0, -1, 10);
    expect(figures(c)).toEqual({ live: 0, tombstones: 0, expiring: 0, total: 0 });
  });

  it('counts the bytes of live records and set members only, an expired record leaving with the size it has then', () => {
    const c = new RecordCounts(() => false, (k) => (k === 'e' ? 30 : 0));
    c.count('a', rec(), 0, 1, 100);
    c.count('t', rec({ tombstone: true }), 0, 1, 50);
    c.count('e', rec({ expiresAt: NOW + 100 }), 0, 1, 30);
    c.member(7, 1);
    expect(c.liveBytes).toBe(137);
    vi.setSystemTime(NOW + 100);
    expect(c.liveBytes).toBe(107);
    c.count('a', rec(), 0, -1, 100);
    c.member(7, -1);
    expect(c.liveBytes).toBe(0);
    // Taken back after its time came: already out of the bytes.
    c.count('e', rec({ expiresAt: NOW + 100 }), 0, -1, 30);
    expect(c.liveBytes).toBe(0);
  });

  it('moves a key between live and tombstones as it is rewritten (old taken back, new added)', () => {
    const c = new RecordCounts(() => false, () => 10);
    c.count('a', rec(), 0, 1, 10);
    c.count('a', rec(), 0, -1, 10);
    c.count('a', rec({ tombstone: true }), 0, 1, 10);
    expect(figures(c)).toMatchObject({ live: 0, tombstones: 1 });
    c.count('a', rec({ tombstone: true }), 0, -1, 10);
    c.count('a', rec(), 0, 1, 10);
    expect(figures(c)).toMatchObject({ live: 1, tombstones: 0 });
  });

  it('moves an expiring record to the tombstones when its time comes, with no write', () => {
    const c = new RecordCounts(() => false, () => 10);
    c.count('a', rec({ expiresAt: NOW + 100 }), 0, 1, 10);
    c.count('b', rec({ expiresAt: NOW + 200 }), 0, 1, 10);
    expect(figures(c)).toEqual({ live: 2, tombstones: 0, expiring: 2, total: 2 });
    vi.setSystemTime(NOW + 99);
    expect(figures(c)).toEqual({ live: 2, tombstones: 0, expiring: 2, total: 2 });
    vi.setSystemTime(NOW + 100);
    expect(figures(c)).toEqual({ live: 1, tombstones: 1, expiring: 1, total: 2 });
    vi.setSystemTime(NOW + 1000);
    expect(figures(c)).toEqual({ live: 0, tombstones: 2, expiring: 0, total: 2 });
    // Taken back after it expired: from the tombstones, where it was moved.
    c.count('a', rec({ expiresAt: NOW + 100 }), 0, -1, 10);
    expect(figures(c)).toEqual({ live: 0, tombstones: 1, expiring: 0, total: 1 });
  });

  it('forgets a record taken back before its time: nothing moves when that time comes', () => {
    const c = new RecordCounts(() => false, () => 10);
    c.count('a', rec({ expiresAt: NOW + 100 }), 0, 1, 10);
    c.count('a', rec({ expiresAt: NOW + 100 }), 0, -1, 10);
    expect(figures(c)).toEqual({ live: 0, tombstones: 0, expiring: 0, total: 0 });
    vi.setSystemTime(NOW + 500);
    expect(figures(c)).toEqual({ live: 0, tombstones: 0, expiring: 0, total: 0 });
  });

  it('counts a record that has already expired as a tombstone, and takes it back from them', () => {
    const c = new RecordCounts(() => false, () => 10);
    c.count('a', rec({ expiresAt: NOW }), 0, 1, 10);
    expect(figures(c)).toEqual({ live: 0, tombstones: 1, expiring: 0, total: 1 });
    c.count('a', rec({ expiresAt: NOW }), 0, -1, 10);
    expect(figures(c)).toEqual({ live: 0, tombstones: 0, expiring: 0, total: 0 });
  });

  it('follows only the newest expiry of a rewritten key', () => {
    const c = new RecordCounts(() => false, () => 10);
    c.count('a', rec({ expiresAt: NOW + 100 }), 0, 1, 10);
    c.count('a', rec({ expiresAt: NOW + 100 }), 0, -1, 10);
    c.count('a', rec({ expiresAt: NOW + 300 }), 0, 1, 10);
    vi.setSystemTime(NOW + 200);
    expect(figures(c)).toEqual({ live: 1, tombstones: 0, expiring: 1, total: 1 });
    vi.setSystemTime(NOW + 300);
    expect(figures(c)).toEqual({ live: 0, tombstones: 1, expiring: 0, total: 1 });
  });

  it('counts a record whose register does not expire (PERSIST, time 0) as live for good', () => {
    const c = new RecordCounts(() => false, () => 10);
    c.count('a', rec({ expiresAt: 0 }), 0, 1, 10);
    vi.setSystemTime(NOW + 10 ** 9);
    expect(figures(c)).toEqual({ live: 1, tombstones: 0, expiring: 0, total: 1 });
    c.count('a', rec({ expiresAt: 0 }), 0, -1, 10);
    expect(figures(c)).toEqual({ live: 0, tombstones: 0, expiring: 0, total: 0 });
  });

  it("counts a set's header as a tombstone while its set is empty", () => {
    const empty = new Set(['s']);
    const asked: string[] = [];
    const c = new RecordCounts((k) => {
      asked.push(k);
      return empty.has(k);
    }, () => 0);
    c.count('s', rec({ kind: 'set' }), 0, 1, 10);
    expect(figures(c)).toMatchObject({ live: 0, tombstones: 1 });
    // The store takes the header back under the old cardinality and adds it under the new one.
    c.count('s', rec({ kind: 'set' }), 0, -1, 10);
    empty.delete('s');
    c.count('s', rec({ kind: 'set' }), 0, 1, 10);
    expect(figures(c)).toMatchObject({ live: 1, tombstones: 0 });
    expect(asked).toEqual(['s', 's', 's']);
    // Plain records never ask.
    c.count('p', rec(), 0, 1, 10);
    expect(asked).toHaveLength(3);
  });

  it('reads the record at its offset in a keyed buffer (as the overlay holds it)', () => {
    const seen: [string, number][] = [];
    const c = new RecordCounts((k, _rec, o) => {
      seen.push([k, o]);
      return true;
    }, () => 0);
    const key = Buffer.from('some-key');
    const o = keyedRecordOffset(key.length);
    c.count('e', encodeKeyedRecord(key, fields({ expiresAt: NOW + 50 })), o, 1, 10);
    c.count('t', encodeKeyedRecord(key, fields({ tombstone: true })), o, 1, 10);
    c.count('s', encodeKeyedRecord(key, fields({ kind: 'set' })), o, 1, 10);
    expect(figures(c)).toEqual({ live: 1, tombstones: 2, expiring: 1, total: 3 });
    expect(seen).toEqual([['s', o]]);
    vi.setSystemTime(NOW + 50);
    expect(figures(c)).toEqual({ live: 0, tombstones: 3, expiring: 0, total: 3 });
  });

  it('moves keys expiring in any order each at its own time', () => {
    const c = new RecordCounts(() => false, () => 10);
    const delays = [10, 30, 20, 40, 50, 25, 21, 60, 70, 35, 5, 45];
    delays.forEach((d, i) => c.count(`k${i}`, rec({ expiresAt: NOW + d }), 0, 1, 10));
    for (let t = 0; t <= 80; t++) {
      vi.setSystemTime(NOW + t);
      const left = delays.filter((d) => d > t).length;
      expect([t, c.live, c.tombstones]).toEqual([t, left, delays.length - left]);
    }
  });

  it('counts one key once however many stale expiry times it left behind', () => {
    const c = new RecordCounts(() => false, () => 10);
    c.count('b', rec({ expiresAt: NOW + 10 }), 0, 1, 10);
    // Thousands of rewrites leave stale heap entries: enough to make the index rebuild itself.
    for (let i = 1; i <= 3000; i++) {
      if (i > 1) c.count('a', rec({ expiresAt: NOW + i - 1 }), 0, -1, 10);
      c.count('a', rec({ expiresAt: NOW + i }), 0, 1, 10);
    }
    vi.setSystemTime(NOW + 10);
    expect(figures(c)).toEqual({ live: 1, tombstones: 1, expiring: 1, total: 2 });
    vi.setSystemTime(NOW + 2999);
    expect(figures(c)).toEqual({ live: 1, tombstones: 1, expiring: 1, total: 2 });
    vi.setSystemTime(NOW + 3000);
    expect(figures(c)).toEqual({ live: 0, tombstones: 2, expiring: 0, total: 2 });
  });

  it('agrees with a model over random writes, removals and the passing of time', () => {
    const op = fc.oneof(
      fc.record({ op: fc.constant('write' as const), key: fc.integer({ min: 0, max: 40 }), shape: fc.constantFrom<Shape>({}, { tombstone: true }, { expiresAt: 0 }), ttl: fc.constant(0) }),
      fc.record({ op: fc.constant('write' as const), key: fc.integer({ min: 0, max: 40 }), shape: fc.constant<Shape>({}), ttl: fc.integer({ min: -20, max: 300 }) }),
      fc.record({ op: fc.constant('remove' as const), key: fc.integer({ min: 0, max: 40 }) }),
      fc.record({ op: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 10 }) }),
      fc.record({ op: fc.constant('look' as const) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        vi.setSystemTime(NOW);
        const c = new RecordCounts(() => false, () => 10);
        const held = new Map<string, { rec: Buffer; tombstone: boolean; at: number }>();
        const expected = (): ReturnType<typeof figures> => {
          const now = Date.now();
          const live = [...held.values()].filter((h) => !h.tombstone && (h.at === 0 || h.at > now));
          return { live: live.length, tombstones: held.size - live.length, expiring: live.filter((h) => h.at !== 0).length, total: held.size };
        };
        for (const o of ops) {
          if (o.op === 'wait') {
            vi.setSystemTime(Date.now() + o.ms);
          } else if (o.op === 'look') {
            expect(figures(c)).toEqual(expected());
          } else {
            const k = `k${o.key}`;
            const old = held.get(k);
            if (old !== undefined) c.count(k, old.rec, 0, -1, 10);
            held.delete(k);
            if (o.op === 'remove') continue;
            const shape: Shape = o.ttl === 0 ? o.shape : { expiresAt: Date.now() + o.ttl };
            const r = rec(shape);
            c.count(k, r, 0, 1, 10);
            held.set(k, { rec: r, tombstone: shape.tombstone === true, at: shape.expiresAt ?? 0 });
          }
        }
        expect(figures(c)).toEqual(expected());
      }),
      { numRuns: 300, seed: 20_240_611 },
    );
  });
});
