import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RunningNode } from '../../src/node.js';
import { decodeMessage, encodeMessages, opOf } from '../../src/replication/message.js';
import { stateOf } from '../../src/store/state.js';
import { LineClient, startTestNode } from '../helpers.js';

/*
 * Property: whatever the operations on 3 replicas, and whatever replication does with them (delivered
 * late, out of order, twice, or never), anti-entropy leaves the replicas identical: same root, same
 * contents. A counter only ever incremented or decremented ends at the exact sum, on every replica. A
 * set only ever added to and removed from holds exactly what the add-wins model says: the members with
 * an add that no remove saw.
 */

type Cmd = 'SET' | 'DEL' | 'INC' | 'DEC' | 'APPEND' | 'SETEX' | 'EXPIRE' | 'PERSIST';

interface Step {
  readonly node: number;
  readonly cmd: Cmd;
  readonly key: number;
  readonly n: number;
}

const step = fc.record({
  node: fc.integer({ min: 0, max: 2 }),
  cmd: fc.constantFrom<Cmd>('SET', 'DEL', 'INC', 'INC', 'INC', 'DEC', 'APPEND', 'SETEX', 'EXPIRE', 'PERSIST'),
  key: fc.constantFrom(0, 1, 2, 3, 4, 4, 4, 5),
  n: fc.integer({ min: 1, max: 1000 }),
});

const MEMBERS = ['x0', 'x1', 'x2', 'x3'];

/** The members a set step names: one or two of MEMBERS, chosen by `n`. */
function membersOf(n: number): string[] {
  const first = MEMBERS[n % 4] as string;
  const second = MEMBERS[(n >> 2) % 4] as string;
  return (n >> 4) % 2 === 1 && second !== first ? [first, second] : [first];
}

/**
 * Keys 0 and 1 of each run see every plain and counter command; keys 2 and 3 only INC and DEC; key 4
 * only SADD and SREM (checked against the model); key 5 SADD, SREM, DEL, EXPIRE and PERSIST.
 */
function line(s: Step, key: string): string {
  if (s.key === 4) return `${s.n % 2 === 0 ? 'SADD' : 'SREM'} ${key} ${membersOf(s.n >> 1).join(' ')}`;
  if (s.key === 5) {
    const words = [`SADD ${key}`, `SREM ${key}`, `DEL ${key}`, `EXPIRE ${key} ${1000 + s.n}`, `PERSIST ${key}`];
    const w = words[s.n % 5] as string;
    return w.startsWith('S') ? `${w} ${membersOf(s.n).join(' ')}` : w;
  }
  const counterOnly = s.key >= 2;
  const cmd = counterOnly ? (s.n % 2 === 0 ? 'INC' : 'DEC') : s.cmd;
  switch (cmd) {
    case 'SET':
      return `SET ${key} ${s.n}`;
    case 'DEL':
      return `DEL ${key}`;
    case 'INC':
    case 'DEC':
      return `${cmd} ${key} ${s.n}`;
    case 'APPEND':
      return `APPEND ${key} ${s.n}`;
    case 'SETEX':
      return `SETEX ${key} ${1000 + s.n} ${s.n}`;
    case 'EXPIRE':
      return `EXPIRE ${key} ${1000 + s.n}`;
    case 'PERSIST':
      return `PERSIST ${key}`;
  }
}

/** A small deterministic generator for delivery decisions (mulberry32). */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The add-wins model of one set on one replica, per member: the adds it knows of, and those it knows
 * were removed (ids of SADD events). A member is in the set if it knows an add it does not know removed.
 */
type SetModel = Map<string, { known: Set<number>; removed: Set<number> }>;

function entry(m: SetModel, member: string): { known: Set<number>; removed: Set<number> } {
  let e = m.get(member);
  if (e === undefined) m.set(member, (e = { known: new Set(), removed: new Set() }));
  return e;
}

const present = (e: { known: Set<number>; removed: Set<number> } | undefined): boolean =>
  e !== undefined && [...e.known].some((id) => !e.removed.has(id));

/** Merges what a replica knows of some members into another replica's model (a union). */
function mergeModel(into: SetModel, from: SetModel): void {
  for (const [member, e] of from) {
    const mine = entry(into, member);
    for (const id of e.known) mine.known.add(id);
    for (const id of e.removed) mine.removed.add(id);
  }
}

interface Pending {
  readonly from: number;
  readonly to: number;
  readonly payload: Buffer;
  /** What the sender's model knew of the members its step wrote, when it wrote them. */
  model?: SetModel;
}

describe('convergence of counters, sets, expiries and plain values on 3 replicas', () => {
  it('replicas end identical after anti-entropy; pure counters hold the exact sum; sets hold what add-wins says', async () => {
    const nodes: RunningNode[] = [];
    for (const id of ['node-a', 'node-b', 'node-c']) nodes.push(await startTestNode({ node_id: id }));
    const clients = await Promise.all(nodes.map((n) => LineClient.connect(n.address.port)));
    const limits = { maxKeyBytes: 512, maxValueBytes: 1 << 20 };
    let outbox: Pending[] = [];
    nodes.forEach((n, from) =>
      n.store.onAcknowledged((writes) => {
        const ops = writes.map((w) => opOf(Buffer.from(w.key), stateOf(Buffer.from(w.rec)), n.store.nodeId, n.store.counterWriter));
        for (const payload of encodeMessages(n.store.nodeId, ops, 1 << 20)) {
          for (let to = 0; to < 3; to++) if (to !== from) outbox.push({ from, to, payload });
        }
      }),
    );
    const deliver = (p: Pending): void => {
      const decoded = decodeMessage(p.payload, limits);
      if (decoded === undefined) throw new Error('a replication message did not decode');
      for (const op of decoded.message.ops) void nodes[p.to]?.store.applyRemote(op.key, op.state);
      nodes[p.to]?.store.flush();
      if (p.model !== undefined) mergeModel(models[p.to] as SetModel, p.model);
    };
    let models: SetModel[] = [];
    let adds = 0;
    /** Runs a SADD or SREM of key 4 on a replica's model; returns the count the reply should show. */
    const modelStep = (node: number, text: string): { count: number; touched: SetModel } => {
      const [cmd, , ...members] = text.split(' ');
      const model = models[node] as SetModel;
      const touched: SetModel = new Map();
      let count = 0;
      for (const member of new Set(members)) {
        const e = entry(model, member);
        if (cmd === 'SADD') {
          // Every SADD is a new add (it survives a concurrent remove); the reply counts new members.
          if (!present(e)) count++;
          e.known.add(++adds);
        } else if (cmd === 'SREM' && present(e)) {
          for (const id of e.known) e.removed.add(id);
          count++;
        }
        touched.set(member, { known: new Set(e.known), removed: new Set(e.removed) });
      }
      return { count, touched };
    };
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 40 }), fc.integer(), async (steps, seed) => {
        run++;
        const rnd = random(seed);
        outbox = [];
        models = [0, 1, 2].map((): SetModel => new Map());
        const sums = new Map<string, bigint>();
        for (const s of steps) {
          const key = `r${run}:k${s.key}`;
          const text = line(s, key);
          const sent = outbox.length;
          const reply = await clients[s.node]?.call(text);
          expect(reply).not.toMatch(/^ERROR (?!Value for key)/);
          if (s.key === 4) {
            // The replica's own view must be the model's: the reply counts what the model changed.
            const { count, touched } = modelStep(s.node, text);
            expect(reply, `${JSON.stringify(steps)} seed ${seed} at ${steps.indexOf(s)}`).toBe(`${text.slice(0, 4)} ${count}`);
            for (const p of outbox.slice(sent)) p.model = touched;
          }
          if (s.key >= 2) sums.set(key, (sums.get(key) ?? 0n) + (text.startsWith('INC') ? 1n : -1n) * BigInt(s.n));
          // Replication meanwhile: some messages arrive, some twice, some never, in any order.
          while (outbox.length > 0 && rnd() < 0.6) {
            const i = Math.floor(rnd() * outbox.length);
            const p = outbox[i] as Pending;
            const fate = rnd();
            if (fate < 0.7) deliver(p);
            if (fate >= 0.15 || fate < 0.05) outbox.splice(i, 1);
          }
        }
        for (const p of outbox) if (rnd() < 0.5) deliver(p);
        // Anti-entropy alone repairs the rest.
        const port = (i: number): number => (nodes[i] as RunningNode).address.port;
        expect(await clients[0]?.call(`SYNC 127.0.0.1 ${port(1)}`)).toBe('OK');
        expect(await clients[1]?.call(`SYNC 127.0.0.1 ${port(2)}`)).toBe('OK');
        expect(await clients[0]?.call(`SYNC 127.0.0.1 ${port(2)}`)).toBe('OK');
        // Members of old set epochs are removed once LMDB holds them (store/sets.ts).
        await Promise.all(nodes.map((n) => n.store.settled()));
        const roots = nodes.map((n) => n.store.rootHash().toString('hex'));
        expect(new Set(roots).size).toBe(1);
        for (let k = 0; k < 4; k++) {
          const key = `r${run}:k${k}`;
          const seen = await Promise.all(clients.map(async (c) => `${await c.call(`GET ${key}`)} ${await c.call(`TTL ${key}`)}`));
          expect(new Set(seen).size).toBe(1);
          const sum = sums.get(key);
          if (sum !== undefined) expect(seen[0]).toBe(`VALUE ${sum} TTL -1`);
        }
        for (const k of [4, 5]) {
          const key = `r${run}:k${k}`;
          const seen = await Promise.all(clients.map(async (c) => `${await c.members(key)} ${await c.call(`SCARD ${key}`)} ${await c.call(`TTL ${key}`)}`));
          expect(new Set(seen).size).toBe(1);
        }
        // Every replica has everything now: the model's union of what each knew is the answer.
        const all: SetModel = new Map();
        for (const m of models) mergeModel(all, m);
        const expected = MEMBERS.filter((m) => present(all.get(m)));
        const members = await clients[0]?.members(`r${run}:k4`);
        expect(members).toBe([`MEMBERS ${expected.length}`, ...expected].join('\n'));
      }),
      { numRuns: 80, seed: 2026 },
    );
  }, 120_000);
});
