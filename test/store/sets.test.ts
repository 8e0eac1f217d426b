import { describe, expect, it, vi } from 'vitest';
import { defer, silent, tempDatabases } from './fixture.js';
import type { Databases } from '../../src/store/databases.js';
import { encodeMember, memberKey } from '../../src/store/members.js';
import { PendingWrite } from '../../src/store/overlay.js';
import { encodeKeyedRecord, encodeRecord, FLAG_TOMBSTONE, indexKey, KIND, keyedRecordOffset, kindFlags, type StoredRecord } from '../../src/store/record.js';
import { isDead, isSetHeader, SetIndex } from '../../src/store/sets.js';

const EMPTY = Buffer.alloc(0);
const b = (s: string): Buffer => Buffer.from(s);
const latin1 = (key: Buffer): string => key.toString('latin1');

/** Epochs by their wall time: E0 < E1 < E2 < E3. */
const E0 = 1_700_000_000_000;
const E1 = E0 + 1000;
const E2 = E1 + 1000;
const E3 = E2 + 1000;


let nextHash = 1;

function fields(wall: number, flags: number, body: Buffer): StoredRecord {
  return { wall, counter: 0, node: 'n1', flags, body, item: '\0'.repeat(16), keyHash: { hi: nextHash++, lo: 7 } };
}

function headerFields(epoch: number, tombstone = false): StoredRecord {
  return fields(epoch, tombstone ? FLAG_TOMBSTONE : kindFlags(KIND.set), EMPTY);
}

/** A member record of `epoch`: in the set unless `present` is false (its one add removed). */
function memberFields(epoch: number, present = true): StoredRecord {
  const dot = { wall: epoch + 1, counter: 0 };
  return fields(epoch, kindFlags(KIND.member), encodeMember([{ node: 'n1', dot, removed: present ? undefined : { wall: epoch + 2, counter: 0 } }]));
}

const header = (epoch: number, tombstone = false): Buffer => encodeRecord(headerFields(epoch, tombstone));
const member = (epoch: number, present = true): Buffer => encodeRecord(memberFields(epoch, present));

interface Fixture {
  readonly dbs: Databases;
  readonly sets: SetIndex;
  /** The overlay's pending writes, by latin1 key. */
  readonly pending: Map<string, PendingWrite>;
  readonly removed: [string, Buffer][];
  /** Stores `rec` under `key` in LMDB, with its index entry. */
  readonly store: (key: Buffer, rec: Buffer) => void;
  /** Makes `rec` a pending write of `key`. */
  readonly pend: (key: Buffer, f: StoredRecord) => void;
  readonly has: (key: Buffer) => boolean;
  readonly indexed: (key: Buffer) => boolean;
}

function fixture(): Fixture {
  const { dbs } = tempDatabases('sets');
  const pending = new Map<string, PendingWrite>();
  const removed: [string, Buffer][] = [];
  const sets = new SetIndex({
    ...dbs,
    logger: silent,
    readAt: (key, k) => pending.get(k)?.rec ?? dbs.db.getBinary(key),
    isPending: (k) => pending.has(k),
    pending: () => pending.values(),
    onRemoved: (k, rec) => removed.push([k, Buffer.from(rec)]),
  });
  defer(() => sets.stop());
  return {
    dbs,
    sets,
    pending,
    removed,
    store: (key, rec) => {
      dbs.db.putSync(key, rec);
      dbs.index.putSync(indexKey(rec, key), EMPTY);
    },
    pend: (key, f) => {
      pending.set(latin1(key), new PendingWrite(latin1(key), encodeKeyedRecord(key, f), false));
    },
    has: (key) => dbs.db.getBinary(key) !== undefined,
    indexed: (key) => {
      for (const ik of dbs.index.getKeys({})) if (ik.subarray(8).equals(key)) return true;
      return false;
    },
  };
}

const m = (set: string, name: string | Buffer): Buffer => memberKey(b(set), typeof name === 'string' ? b(name) : name);

describe('SetIndex counts', () => {
  it("counts each set's present members per epoch, and its member records of any kind", () => {
    const { sets } = fixture();
    sets.count(latin1(m('s', 'a')), member(E1), 0, 1);
    sets.count(latin1(m('s', 'b')), member(E1), 0, 1);
    sets.count(latin1(m('s', 'c')), member(E1, false), 0, 1);
    sets.count(latin1(m('s', 'd')), member(E2), 0, 1);
    expect(sets.card('s', header(E1))).toBe(2);
    expect(sets.card('s', header(E2))).toBe(1);
    expect(sets.card('s', header(E3))).toBe(0);
    expect(sets.card('t', header(E1))).toBe(0);
    expect(sets.hasMembers('s')).toBe(true);
    expect(sets.hasMembers('t')).toBe(false);

    // Taken back one by one: a removed member record still makes the set "have members".
    sets.count(latin1(m('s', 'a')), member(E1), 0, -1);
    sets.count(latin1(m('s', 'b')), member(E1), 0, -1);
    sets.count(latin1(m('s', 'd')), member(E2), 0, -1);
    expect([sets.card('s', header(E1)), sets.card('s', header(E2))]).toEqual([0, 0]);
    expect(sets.hasMembers('s')).toBe(true);
    sets.count(latin1(m('s', 'c')), member(E1, false), 0, -1);
    expect(sets.hasMembers('s')).toBe(false);
  });

  it('reads records at their offset in a keyed buffer (as the overlay holds them)', () => {
    const { sets } = fixture();
    const key = m('s', 'a');
    const o = keyedRecordOffset(key.length);
    sets.count(latin1(key), encodeKeyedRecord(key, memberFields(E1)), o, 1);
    sets.count(latin1(m('s', 'b')), encodeKeyedRecord(key, memberFields(E1, false)), o, 1);
    const hk = b('s');
    expect(sets.card('s', encodeKeyedRecord(hk, headerFields(E1)), keyedRecordOffset(hk.length))).toBe(1);
    expect(sets.card('s', encodeKeyedRecord(hk, headerFields(E2)), keyedRecordOffset(hk.length))).toBe(0);
  });

  it("names the set whose cardinality in the record's epoch leaves or reaches 0", () => {
    const { sets } = fixture();
    const a = latin1(m('s', 'a'));
    const c = latin1(m('s', 'c'));
    expect(sets.crossing(a, member(E1), 0, 1)).toBe('s');
    sets.count(a, member(E1), 0, 1);
    expect(sets.crossing(c, member(E1), 0, 1)).toBeUndefined();
    expect(sets.crossing(c, member(E2), 0, 1)).toBe('s');
    // A member that is not in the set never moves the cardinality.
    expect(sets.crossing(c, member(E1, false), 0, 1)).toBeUndefined();
    expect(sets.crossing(c, member(E2, false), 0, 1)).toBeUndefined();
    sets.count(c, member(E1), 0, 1);
    expect(sets.crossing(a, member(E1), 0, -1)).toBeUndefined();
    sets.count(c, member(E1), 0, -1);
    expect(sets.crossing(a, member(E1), 0, -1)).toBe('s');
  });
});

describe('SetIndex.members', () => {
  it("lists the live members of the header's epoch, pending writes over LMDB, in byte order", () => {
    const f = fixture();
    f.store(m('r', 'other set before'), member(E1));
    f.store(m('s', 'a'), member(E1));
    f.store(m('s', 'b'), member(E1));
    f.store(m('s', 'c'), member(E1, false));
    f.store(m('s', 'd'), member(E2));
    f.store(m('s', 'old'), member(E0));
    f.store(m('t', 'other set after'), member(E1));
    f.store(m('sa', 'longer set key'), member(E1));
    f.pend(m('s', 'b'), memberFields(E1, false));
    f.pend(m('s', 'c'), memberFields(E1));
    f.pend(m('s', '0'), memberFields(E1));
    f.pend(m('s', Buffer.from([0xff])), memberFields(E1));
    f.pend(m('t', 'pending elsewhere'), memberFields(E1));
    expect(f.sets.members(b('s'), header(E1))).toEqual([b('0'), b('a'), b('c'), Buffer.from([0xff])]);
    expect(f.sets.members(b('s'), header(E2)).map(String)).toEqual(['d']);
    expect(f.sets.members(b('s'), header(E3))).toEqual([]);
    expect(f.sets.members(b('nothing'), header(E1))).toEqual([]);
  });
});

describe('SetIndex sweeps', () => {
  it('removes members of epochs older than the header, with their index entries, telling onRemoved', () => {
    const f = fixture();
    f.store(b('s'), header(E2));
    f.store(b('u'), header(E3, true)); // deleted: a tombstone of a newer epoch
    f.store(b('t'), header(E2));
    const old1 = m('s', 'old1');
    const old2 = m('s', 'old2');
    const cur = m('s', 'cur');
    const later = m('s', 'later');
    const deleted = m('u', 'x');
    const notQueued = m('t', 'x');
    const orphan = m('none', 'x');
    const old1Rec = member(E1);
    f.store(old1, old1Rec);
    f.store(old2, member(E1, false));
    f.store(cur, member(E2));
    f.store(later, member(E3));
    f.store(deleted, member(E2));
    f.store(notQueued, member(E1));
    f.store(orphan, member(E1));
    for (const k of ['s', 'u', 'none']) f.sets.sweepLater(k);
    f.sets.sweepNow();
    expect([old1, old2, deleted].map(f.has)).toEqual([false, false, false]);
    expect([old1, old2, deleted].map(f.indexed)).toEqual([false, false, false]);
    // The header's epoch and newer ones, sets not queued, and members with no header stay.
    expect([cur, later, notQueued, orphan].map(f.has)).toEqual([true, true, true, true]);
    expect(f.removed.map(([k]) => k).sort()).toEqual([old1, old2, deleted].map(latin1).sort());
    expect(f.removed.find(([k]) => k === latin1(old1))?.[1]).toEqual(old1Rec);
  });

  it("judges by the header's pending write, and keeps a dead member with a pending write until it is in LMDB", () => {
    const f = fixture();
    f.store(b('s'), header(E1));
    f.pend(b('s'), headerFields(E2)); // DEL then SADD: the new epoch is still on its way
    const inLmdb = m('s', 'a');
    const pendingOnly = m('s', 'b');
    f.store(inLmdb, member(E1));
    f.pend(inLmdb, memberFields(E1, false));
    f.pend(pendingOnly, memberFields(E1));
    f.sets.sweepLater('s');
    f.sets.sweepNow();
    expect(f.has(inLmdb)).toBe(true);
    expect(f.removed).toEqual([]);

    // The overlay's batch reaches LMDB: the retry removes both.
    f.store(b('s'), header(E2));
    f.store(inLmdb, member(E1, false));
    f.store(pendingOnly, member(E1));
    f.pending.clear();
    f.sets.sweepNow();
    expect([inLmdb, pendingOnly].map(f.has)).toEqual([false, false]);
    expect(f.removed).toHaveLength(2);

    // Nothing queued now: another dead member waits for the next write that moves the set on.
    const late = m('s', 'c');
    f.store(late, member(E1));
    f.sets.sweepNow();
    expect(f.has(late)).toBe(true);
  });

  it('retries a dead member whose pending rewrite was undone, leaving the dead record in LMDB', () => {
    const f = fixture();
    f.store(b('s'), header(E2));
    const a = m('s', 'a');
    f.store(a, member(E1));
    // SADD in the new epoch, on its way: nothing to remove once it lands...
    f.pend(a, memberFields(E2));
    f.sets.sweepLater('s');
    f.sets.sweepNow();
    expect(f.has(a)).toBe(true);
    // ...but its log append failed and it was undone: the dead record is still there, and goes.
    f.pending.clear();
    f.sets.sweepNow();
    expect(f.has(a)).toBe(false);
    expect(f.removed.map(([k]) => k)).toEqual([latin1(a)]);
  });

  it('sweeps on its own soon after sweepLater(), and not at all once stopped', async () => {
    const f = fixture();
    f.store(b('s'), header(E2));
    const dead = m('s', 'x');
    f.store(dead, member(E1));
    f.sets.sweepLater('s');
    expect(f.has(dead)).toBe(true);
    await vi.waitFor(() => expect(f.has(dead)).toBe(false), { timeout: 2000, interval: 5 });

    const g = fixture();
    g.store(b('s'), header(E2));
    g.store(dead, member(E1));
    g.sets.stop();
    g.sets.sweepLater('s');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(g.has(dead)).toBe(true);
  });
});

describe('set helpers', () => {
  it('isDead: a member of an epoch older than its header, never without a header', () => {
    const v = (wall: number, node = 'n1'): { wall: number; counter: number; node: string } => ({ wall, counter: 0, node });
    expect(isDead(v(E1), header(E2))).toBe(true);
    expect(isDead(v(E2), header(E2))).toBe(false);
    expect(isDead(v(E3), header(E2))).toBe(false);
    expect(isDead(v(E2, 'n0'), header(E2))).toBe(true); // same clock reading: the node id decides
    expect(isDead(v(E1), undefined)).toBe(false);
  });

  it("isSetHeader: a set's live header, at any offset", () => {
    expect(isSetHeader(header(E1))).toBe(true);
    expect(isSetHeader(header(E1, true))).toBe(false);
    expect(isSetHeader(member(E1))).toBe(false);
    expect(isSetHeader(encodeRecord(fields(E1, 0, b('plain'))))).toBe(false);
    const key = b('key');
    expect(isSetHeader(encodeKeyedRecord(key, headerFields(E1)), keyedRecordOffset(key.length))).toBe(true);
  });
});
