import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RunningNode } from '../../src/node.js';
import { addMembers, expire, increment, removeMembers, setWithExpiry, stateOf, type Store } from '../../src/store/index.js';
import { startTestNode } from '../helpers.js';

/*
 * The exchange's contract, tried on random pairs of replicas: whatever each side holds (values,
 * tombstones, counters incremented on both sides, set members added and removed on both sides,
 * expiries), one SYNC, from either side, leaves both with the join of the two states: the same root as
 * a third store that merged every record of both.
 */

const op = fc.record({
  side: fc.constantFrom('a', 'b', 'both'),
  kind: fc.constantFrom('set', 'del', 'incr', 'sadd', 'srem', 'setex', 'expire'),
  key: fc.integer({ min: 0, max: 40 }),
  value: fc.string({ maxLength: 10 }),
  n: fc.integer({ min: -5, max: 5 }),
});

type Op = typeof op extends fc.Arbitrary<infer T> ? T : never;

function run(store: Store, o: Op): void {
  const key = Buffer.from(`${o.kind === 'sadd' || o.kind === 'srem' ? 's' : o.kind === 'incr' ? 'c' : 'k'}${o.key}`);
  const member = Buffer.from(`m${Math.abs(o.n)}`);
  switch (o.kind) {
    case 'set':
      void store.set(key, Buffer.from(o.value));
      return;
    case 'del':
      void store.delete(key);
      return;
    case 'incr':
      increment(store, key, BigInt(o.n));
      return;
    case 'sadd':
      addMembers(store, key, [member]);
      return;
    case 'srem':
      removeMembers(store, key, [member]);
      return;
    case 'setex':
      // Some already expired, some far off.
      void setWithExpiry(store, key, Buffer.from(o.value), o.n < 0 ? Date.now() - 1000 : Date.now() + 3_600_000);
      return;
    case 'expire':
      void expire(store, key, Date.now() + 60_000 * (o.n + 6));
  }
}

/** Every record of `from` merged into `into`, as a peer's would be. */
function mergeAll(into: Store, from: Store): void {
  for (const { key, rec } of from.ranges.recordsUnder(0, 0)) void into.applyRemote(key, stateOf(rec));
}

const hex = (n: RunningNode): string => n.store.rootHash().toString('hex');

describe('anti-entropy property', () => {
  it('random replicas of every kind of record reach their join in one SYNC, from either side', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 80 }), fc.boolean(), fc.constantFrom('4', '16'), async (ops, fromB, bits) => {
        const a = await startTestNode({ node_id: 'a', 'anti_entropy.segment_bits': bits });
        const b = await startTestNode({ node_id: 'b', 'anti_entropy.segment_bits': bits });
        const join = await startTestNode({ node_id: 'j', 'anti_entropy.segment_bits': bits });
        try {
          for (const o of ops) for (const node of o.side === 'both' ? [a, b] : o.side === 'a' ? [a] : [b]) run(node.store, o);
          await Promise.all([a.store.settled(), b.store.settled()]);
          mergeAll(join.store, a.store);
          mergeAll(join.store, b.store);
          const [from, to] = fromB ? [b, a] : [a, b];
          const result = await from.antiEntropy.syncWith('127.0.0.1', to.address.port);
          expect(result.converged).toBe(true);
          expect(hex(a)).toBe(hex(b));
          expect(hex(a)).toBe(hex(join));
        } finally {
          await a.stop();
          await b.stop();
          await join.stop();
        }
      }),
      { numRuns: 30, seed: 24 },
    );
  });
});
