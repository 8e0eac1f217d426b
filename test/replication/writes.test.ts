import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it, onTestFinished } from 'vitest';
import { encodeMessages, encodeWrites, opOf } from '../../src/replication/message.js';
import { addMembers, expire, increment, setWithExpiry, stateOf, Store, writeItem, type AcknowledgedWrite } from '../../src/store/index.js';
import { applyPlain, silent, tempDir } from '../helpers.js';

/** A store whose acknowledged local writes are collected, as the replicator receives them. */
function recording(): { store: Store; writes: AcknowledgedWrite[] } {
  const store = Store.open({ path: join(tempDir(), 'db'), nodeId: 'n1', maxClockSkewMs: 60_000, tombstoneGraceSeconds: 60, logger: silent });
  onTestFinished(async () => {
    await store.close();
  });
  const writes: AcknowledgedWrite[] = [];
  store.onAcknowledged((ws) => writes.push(...ws.map((w) => ({ key: Buffer.from(w.key), rec: Buffer.from(w.rec) }))));
  return { store, writes };
}

/** What the replicator published before it read records directly: each record decoded to its op, then encoded. */
const viaStates = (writes: AcknowledgedWrite[], maxBytes: number, writer: string): Buffer[] =>
  encodeMessages('n1', writes.map((w) => opOf(w.key, stateOf(w.rec), 'n1', writer)), maxBytes);

describe('publishing acknowledged writes', () => {
  it('encodes every kind of record exactly as its decoded op would be encoded', () => {
    const { store, writes } = recording();
    const b = (v: string | number[]): Buffer => Buffer.from(v as string);
    void store.set(b('plain'), b('alice ✓'));
    void store.set(b('bin'), b([0xff, 0x00, 0xc3]));
    void store.delete(b('gone'));
    void setWithExpiry(store, b('ttl'), b('soon'), Date.now() + 60_000);
    void writeItem(store, b('mc'), { value: b('flagged'), flags: 7, expiresAt: 0 });
    // A counter that another node incremented too: only this node's totals travel.
    void applyPlain(store, b('hits'), { wall: 1, counter: 0, node: 'n0' }, b('5'));
    increment(store, b('hits'), 3n);
    void expire(store, b('hits'), Date.now() + 90_000);
    addMembers(store, b('tags'), [b('red'), b('blue')]);
    store.flush();
    expect(writes.length).toBeGreaterThanOrEqual(9);
    expect(encodeWrites('n1', writes, 1 << 20, store.counterWriter)).toEqual(viaStates(writes, 1 << 20, store.counterWriter));
    // The counter's own totals travel, under the name this store's totals go under (not n0's).
    const published = encodeWrites('n1', writes, 1 << 20, store.counterWriter).join('');
    expect(published).toContain(`"totals":[[${JSON.stringify(store.counterWriter)},"3","0",`);
    expect(published).not.toContain('["n0"');
    // Split the same way when they do not fit one message.
    expect(encodeWrites('n1', writes, 200, store.counterWriter)).toEqual(viaStates(writes, 200, store.counterWriter));
  });

  it('agrees with the decoded path for any plain value, key and delete', () => {
    const { store, writes } = recording();
    const arb = fc.record({
      key: fc.string({ unit: fc.constantFrom('a', 'Z', ':', '"', '\\', 'é', '𝄞'), minLength: 1, maxLength: 8 }),
      value: fc.option(fc.uint8Array({ maxLength: 24 }), { nil: undefined }),
    });
    fc.assert(
      fc.property(fc.array(arb, { minLength: 1, maxLength: 6 }), (ops) => {
        writes.length = 0;
        for (const { key, value } of ops) void (value === undefined ? store.delete(Buffer.from(key)) : store.set(Buffer.from(key), Buffer.from(value)));
        store.flush();
        expect(writes).toHaveLength(ops.length);
        expect(encodeWrites('n1', writes, 1 << 20, store.counterWriter)).toEqual(viaStates(writes, 1 << 20, store.counterWriter));
      }),
      { numRuns: 100, seed: 23 },
    );
  });
});
