import { describe, expect, it } from 'vitest';
import { defer, silent, tempDatabases } from './fixture.js';
import type { Hlc } from '../../src/hlc.js';
import type { Databases } from '../../src/store/databases.js';
import { encodeMember, memberKey, setKeyOf } from '../../src/store/members.js';
import { TombstonePurger } from '../../src/store/purge.js';
import { encodeRecord, FLAG_TOMBSTONE, indexKey, KIND, kindFlags } from '../../src/store/record.js';
import { encodeState } from '../../src/store/state.js';

const T = 1_700_000_000_000;
const EMPTY = Buffer.alloc(0);
const b = (s: string): Buffer => Buffer.from(s);


function open(): Databases {
  const { dbs } = tempDatabases('purge');
  return dbs;
}

interface Made {
  readonly wall: number;
  readonly tombstone?: boolean;
  readonly expiresAt?: number;
  readonly kind?: 'set' | 'member';
  /** A member's adds: when each was made, and when removed (undefined: present). */
  readonly adds?: readonly { node: string; dot: Hlc; removed?: Hlc }[];
}

let nextHash = 1;

function record(m: Made): Buffer {
  const epoch = { wall: m.wall, counter: 0, node: 'n1' };
  const kind = m.kind === 'set' ? KIND.set : m.kind === 'member' ? KIND.member : KIND.plain;
  const payload = m.kind === 'member' ? encodeMember((m.adds ?? []).map((a) => ({ ...a, removed: a.removed }))) : m.tombstone === true || m.kind === 'set' ? EMPTY : b('v');
  const { flags, body } = encodeState({
    epoch,
    flags: m.tombstone === true ? FLAG_TOMBSTONE : kindFlags(kind),
    expiry: m.expiresAt === undefined ? undefined : { at: m.expiresAt, version: epoch },
    payload,
  });
  return encodeRecord({ ...epoch, flags, body, item: '\0'.repeat(16), keyHash: { hi: nextHash++, lo: 0 } });
}

function store(dbs: Databases, key: Buffer, rec: Buffer): void {
  dbs.db.putSync(key, rec);
  dbs.index.putSync(indexKey(rec, key), EMPTY);
}

function isIndexed(dbs: Databases, key: Buffer): boolean {
  for (const ik of dbs.index.getKeys({})) if (ik.subarray(8).equals(key)) return true;
  return false;
}

function purger(dbs: Databases, opts: { pending?: Set<string>; removed?: [string, Buffer][]; graceSeconds?: number } = {}): TombstonePurger {
  const p = new TombstonePurger({
    ...dbs,
    logger: silent,
    graceSeconds: opts.graceSeconds ?? 60,
    isPending: (k) => opts.pending?.has(k) ?? false,
    headerOf: (k) => dbs.db.getBinary(Buffer.from(setKeyOf(k), 'latin1')),
    onRemoved: (k, rec) => opts.removed?.push([k, Buffer.from(rec)]),
  });
  defer(() => p.stop());
  return p;
}

/** Plain records of every kind the purger decides on. */
function plainFixture(dbs: Databases): Record<string, Buffer> {
  const recs: Record<string, Buffer> = {
    tomb: record({ wall: T, tombstone: true }),
    expired: record({ wall: T - 5000, expiresAt: T }),
    live: record({ wall: T - 10_000 }),
    later: record({ wall: T - 5000, expiresAt: T + 60_000 }),
    persisted: record({ wall: T - 5000, expiresAt: 0 }),
    newTomb: record({ wall: T + 60_000, tombstone: true }),
  };
  for (const [k, rec] of Object.entries(recs)) store(dbs, b(k), rec);
  return recs;
}

const keysOf = (dbs: Databases): string[] => [...dbs.db.getKeys({})].map((k) => k.toString('latin1')).sort();

describe('TombstonePurger', () => {
  it('removes nothing written or expired at or after the horizon, and keeps its horizon', async () => {
    const dbs = open();
    plainFixture(dbs);
    const removed: [string, Buffer][] = [];
    const p = purger(dbs, { removed });
    expect(await p.purge(T)).toBe(0);
    expect(keysOf(dbs)).toEqual(['expired', 'later', 'live', 'newTomb', 'persisted', 'tomb']);
    expect(removed).toEqual([]);
    expect(p.purgedBefore).toBe(0);
    expect(dbs.meta.get('purged_before')).toBeUndefined();
  });

  it('removes tombstones and expired records older than the horizon, with their index entries', async () => {
    const dbs = open();
    const recs = plainFixture(dbs);
    const removed: [string, Buffer][] = [];
    const p = purger(dbs, { removed });
    expect(await p.purge(T + 1)).toBe(2);
    expect(keysOf(dbs)).toEqual(['later', 'live', 'newTomb', 'persisted']);
    expect(isIndexed(dbs, b('tomb'))).toBe(false);
    expect(isIndexed(dbs, b('expired'))).toBe(false);
    expect(isIndexed(dbs, b('live'))).toBe(true);
    expect(removed.sort(([x], [y]) => x.localeCompare(y))).toEqual([
      ['expired', recs.expired],
      ['tomb', recs.tomb],
    ]);
    // The horizon moves, and is kept for the next start.
    expect(p.purgedBefore).toBe(T + 1);
    expect(purger(dbs).purgedBefore).toBe(T + 1);
  });

  it('leaves a record alone while a write to its key is pending', async () => {
    const dbs = open();
    plainFixture(dbs);
    const p = purger(dbs, { pending: new Set(['tomb']) });
    expect(await p.purge(T + 1)).toBe(1);
    expect(keysOf(dbs)).toContain('tomb');
    expect(keysOf(dbs)).not.toContain('expired');
  });

  it('never moves its horizon back, nor on a purge that removed nothing', async () => {
    const dbs = open();
    plainFixture(dbs);
    const p = purger(dbs);
    await p.purge(T + 1);
    expect(await p.purge(T - 1)).toBe(0);
    expect(await p.purge(T + 30_000)).toBe(0);
    expect(p.purgedBefore).toBe(T + 1);
    expect(dbs.meta.get('purged_before')).toBe(T + 1);
  });

  it('removes dead set members at once, and removed members or members of a gone set after the grace', async () => {
    const dbs = open();
    const header = record({ wall: T, kind: 'set' });
    store(dbs, b('s'), header);
    const old = memberKey(b('s'), b('old-epoch'));
    const gone = memberKey(b('s'), b('srem-ed'));
    const present = memberKey(b('s'), b('present'));
    const orphan = memberKey(b('no-set'), b('m'));
    store(dbs, old, record({ wall: T - 100, kind: 'member', adds: [{ node: 'n1', dot: { wall: T + 500, counter: 0 } }] }));
    store(dbs, gone, record({ wall: T, kind: 'member', adds: [{ node: 'n1', dot: { wall: T, counter: 1 }, removed: { wall: T + 10, counter: 0 } }] }));
    store(dbs, present, record({ wall: T, kind: 'member', adds: [{ node: 'n1', dot: { wall: T - 10_000, counter: 0 } }] }));
    store(dbs, orphan, record({ wall: T, kind: 'member', adds: [{ node: 'n2', dot: { wall: T + 20, counter: 0 } }] }));
    const removed: [string, Buffer][] = [];
    const p = purger(dbs, { removed });
    const held = (): string[] => [old, gone, present, orphan].filter((k) => dbs.db.getBinary(k) !== undefined).map((k) => k.toString('latin1'));

    // Dead (an older epoch than the header's) whatever its age.
    expect(await p.purge(T - 1_000_000)).toBe(1);
    expect(removed.map(([k]) => k)).toEqual([old.toString('latin1')]);
    expect(isIndexed(dbs, old)).toBe(false);
    // A removed member: once its last change (the removal at T + 10) is older than the horizon.
    expect(await p.purge(T + 10)).toBe(0);
    expect(await p.purge(T + 11)).toBe(1);
    expect(held()).toEqual([present, orphan].map((k) => k.toString('latin1')));
    // A member of a set that is gone, present or not.
    expect(await p.purge(T + 21)).toBe(1);
    expect(held()).toEqual([present.toString('latin1')]);
    // A present member of the live set stays, however old.
    expect(await p.purge(T + 10 ** 9)).toBe(0);
    expect(keysOf(dbs)).toEqual([present.toString('latin1'), 's'].sort());
  });

  it('purges a chunk at a time: stop() ends it between chunks, and a record rewritten meanwhile is kept', async () => {
    const dbs = open();
    const keys = Array.from({ length: 1500 }, (_, i) => b(`k${String(i).padStart(5, '0')}`));
    dbs.root.transactionSync(() => {
      for (const key of keys) {
        const rec = record({ wall: T, tombstone: true });
        void dbs.db.put(key, rec);
        void dbs.index.put(indexKey(rec, key), EMPTY);
      }
    });
    const p = purger(dbs);
    // The first chunk runs before purge() returns; the key rewritten now is in the second one.
    const first = p.purge(T + 1);
    expect(dbs.db.getBinary(keys[0] as Buffer)).toBeUndefined();
    expect(dbs.db.getBinary(keys[1200] as Buffer)).toBeDefined();
    const rewritten = record({ wall: T + 5, tombstone: true });
    dbs.db.putSync(keys[1200] as Buffer, rewritten);
    expect(await first).toBe(1499);
    expect(dbs.db.getBinary(keys[1200] as Buffer)?.equals(rewritten)).toBe(true);
    expect([...dbs.db.getKeys({})]).toHaveLength(1);

    // Stopped after its first chunk: the rest stays for the next start.
    const dbs2 = open();
    dbs2.root.transactionSync(() => {
      for (const key of keys) void dbs2.db.put(key, record({ wall: T, tombstone: true }));
    });
    const q = purger(dbs2);
    const stopped = q.purge(T + 1);
    q.stop();
    expect(await stopped).toBe(1000);
    expect([...dbs2.db.getKeys({})]).toHaveLength(500);
  });
});
