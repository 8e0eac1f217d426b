// Anti-entropy benchmark (issue #4): two nodes holding the same n keys (100-byte values), made to
// differ in d keys, then one SYNC. Prints the time to converge (and the CPU time both nodes spent in
// it, which a busy machine disturbs less), round trips and bytes on the wire next to the lower bound
// (the bytes of the differing records), the start-up time with n keys, and what a write's tree update
// costs.
//
//   npm run bench:ae -- [--n 100000,1000000] [--d 0,1,100,10000] [--bits 16] [--rounds 3]
//                       [--bootstrap] [--warm] [--cpu-a 0] [--cpu-b 1] [--cli dist/cli.js] [--json file]
//
// --warm runs one exchange over 100 other differing keys before the one measured, so that the
// measured one runs compiled code, as a node that has been up a while does (a fresh process's first
// exchange spends most of its time in V8's interpreter).
//
// --bootstrap also fills an empty node from a full one with one SYNC: time, bytes against the bytes of
// the records, keys/s and the empty node's peak RSS.
//
// --cli runs another build's node (e.g. a worktree of the previous commit) for a comparison.
//
// Half of the d keys are rewritten on node A (B pulls them), half on node B (B pushes them); B starts
// the exchange. Both nodes run with MQTT off, so only anti-entropy can bring them together. The n
// keys are written once through the client protocol, the node that wrote them is restarted once (its
// first start-up with them is printed), then its LMDB directory is copied for A and B, so both start as
// exact replicas, from the snapshot of a clean stop.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpuSecondsOf, freePort, list, median, root, startProcess, waitReady } from './bench-lib.mjs';

const { values: args } = parseArgs({
  options: {
    n: { type: 'string', default: '100000,1000000' },
    d: { type: 'string', default: '0,1,100,10000' },
    bits: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '3' },
    'cpu-a': { type: 'string', default: '0' },
    'cpu-b': { type: 'string', default: '1' },
    json: { type: 'string' },
    bootstrap: { type: 'boolean', default: false },
    warm: { type: 'boolean', default: false },
    cli: { type: 'string', default: join(root, 'dist/cli.js') },
  },
});

// Extra flags for the node processes, e.g. BENCH_NODE_FLAGS='--cpu-prof --cpu-prof-dir=prof' to profile.
const nodeFlags = list(process.env.BENCH_NODE_FLAGS ?? '').flatMap((f) => f.split(' ')).filter(Boolean);
const VALUE_BYTES = 100;
const value = (tag, i) => `${tag}-${i}-`.padEnd(VALUE_BYTES, 'x');
const keyOf = (i) => `key:${String(i).padStart(8, '0')}`;

/** A pipelining line client: `call` resolves with the reply line; `lines` with the next n lines. */
class Client {
  static async open(port) {
    const socket = connect({ port, host: '127.0.0.1', noDelay: true });
    await new Promise((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new Client(socket);
  }

  constructor(socket) {
    this.socket = socket;
    this.buf = '';
    this.waiting = [];
    socket.setEncoding('utf8');
    socket.on('data', (s) => {
      this.buf += s;
      this.deliver();
    });
  }

  deliver() {
    let nl;
    while (this.waiting.length > 0 && (nl = this.buf.indexOf('\r\n')) !== -1) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 2);
      this.waiting.shift()(line);
    }
  }

  /** The next reply line. */
  next() {
    const p = new Promise((resolve) => this.waiting.push(resolve));
    this.deliver();
    return p;
  }

  call(line) {
    this.socket.write(`${line}\r\n`);
    return this.next();
  }

  /** Every STATS section (`STATS all`; a build from before sections answers bare STATS with all of them). */
  async stats() {
    this.socket.write('STATS all\r\n');
    const out = new Map();
    if ((await this.next()).startsWith('ERROR')) {
      this.socket.write('STATS\r\n');
      await this.next();
    }
    for (;;) {
      const line = await this.next();
      if (line === 'END') return out;
      const i = line.indexOf(':');
      if (i > 0) out.set(line.slice(0, i), line.slice(i + 1));
    }
  }

  close() {
    this.socket.destroy();
  }
}

function startNode(id, dir, port, cpu) {
  return startProcess(
    cpu,
    process.execPath,
    [...nodeFlags, args.cli, '--node-id', id, '--port', String(port), '--data-dir', dir, '--log-level', 'warn'],
    {
      MERKLE_KV_MQTT_ENABLED: 'false',
      MERKLE_KV_ANTI_ENTROPY_ENABLED: 'false',
      MERKLE_KV_ANTI_ENTROPY_SEGMENT_BITS: args.bits,
    },
  );
}

/** Writes keys [from, to) with MSET lines of 100 pairs, up to 32 lines in flight. */
async function fill(client, from, to, tag) {
  const inFlight = new Set();
  for (let i = from; i < to; i += 100) {
    const pairs = [];
    for (let k = i; k < Math.min(i + 100, to); k++) pairs.push(keyOf(k), value(tag, k));
    const p = client.call(`MSET ${pairs.join(' ')}`).then((r) => {
      if (r !== 'OK') throw new Error(`MSET: ${r}`);
      inFlight.delete(p);
    });
    inFlight.add(p);
    if (inFlight.size >= 32) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
}

/** Starts a node on `dir` and returns its start-up time (spawn to accepting connections). */
async function boot(id, dir, cpu) {
  const port = await freePort();
  const t0 = performance.now();
  const proc = startNode(id, dir, port, cpu);
  await waitReady(port);
  return { proc, port, startupMs: performance.now() - t0 };
}

async function scenario(base, n, d) {
  const work = mkdtempSync(join(tmpdir(), 'bench-ae-'));
  try {
    cpSync(base, join(work, 'a'), { recursive: true });
    cpSync(base, join(work, 'b'), { recursive: true });
    const a = await boot('node-a', join(work, 'a'), args['cpu-a']);
    const b = await boot('node-b', join(work, 'b'), args['cpu-b']);
    try {
      const ca = await Client.open(a.port);
      const cb = await Client.open(b.port);
      // Spread the differing keys over the key space; half newer on A, half newer on B.
      const step = Math.max(1, Math.floor(n / Math.max(d, 1)));
      const onA = [];
      const onB = [];
      for (let j = 0; j < d; j++) (j % 2 === 0 ? onA : onB).push((j * step) % n);
      const write = async (c, keys, tag) => {
        for (let i = 0; i < keys.length; i += 100) {
          const pairs = keys.slice(i, i + 100).flatMap((k) => [keyOf(k), value(tag, k)]);
          if ((await c.call(`MSET ${pairs.join(' ')}`)) !== 'OK') throw new Error('MSET failed');
        }
      };
      if (args.warm) {
        // Keys the measured difference does not touch (odd offsets from its even ones).
        const warmKeys = Array.from({ length: 100 }, (_, j) => (j * Math.floor(n / 100) + 1) % n);
        await write(ca, warmKeys.filter((_, j) => j % 2 === 0), 'warm-a');
        await write(cb, warmKeys.filter((_, j) => j % 2 === 1), 'warm-b');
        if ((await cb.call(`SYNC 127.0.0.1 ${a.port}`)) !== 'OK') throw new Error('warm-up SYNC failed');
      }
      await write(ca, onA, 'changed-on-a');
      await write(cb, onB, 'changed-on-b');
      const before = await cb.stats();
      const cpu = () => cpuSecondsOf(a.proc.child.pid) + cpuSecondsOf(b.proc.child.pid);
      const cpu0 = cpu();
      const t0 = performance.now();
      const reply = await cb.call(`SYNC 127.0.0.1 ${a.port}`);
      const ms = performance.now() - t0;
      const cpuMs = (cpu() - cpu0) * 1000;
      if (reply !== 'OK') throw new Error(`SYNC: ${reply}`);
      const after = await cb.stats();
      const delta = (k) => Number(after.get(k)) - Number(before.get(k));
      // A new connection: one idle through a long SYNC would have been closed by the node.
      ca.close();
      const ca2 = await Client.open(a.port);
      const [ha, hb] = [await ca2.call('HASH'), await cb.call('HASH')];
      ca2.close();
      // Lower bound: each differing record once, as key + value + version (8 bytes) + writer id.
      const lowerBound = d * (keyOf(0).length + VALUE_BYTES + 8 + 'node-a'.length);
      ca.close();
      cb.close();
      return {
        n,
        d,
        ms,
        cpuMs,
        roundTrips: delta('anti_entropy_round_trips'),
        bytes: delta('anti_entropy_bytes_sent') + delta('anti_entropy_bytes_received'),
        lowerBound,
        keysMoved: delta('anti_entropy_keys_sent') + delta('anti_entropy_keys_received'),
        converged: ha === hb,
        startupMs: Math.max(a.startupMs, b.startupMs),
      };
    } finally {
      await a.proc.stop();
      await b.proc.stop();
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Peak resident memory of process `pid` (MB), from /proc (Linux): mapped file pages included. */
function peakRssMb(pid) {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
  return m === null ? NaN : Number(m[1]) / 1024;
}

/** Resident memory of process `pid` now (MB): anonymous, and in all. */
function memoryOf(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'latin1');
  const kb = (field) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
  return { anon: kb('RssAnon') / 1024, all: kb('VmRSS') / 1024 };
}

/** An empty node B filled from A (which holds n keys) by one SYNC. */
async function bootstrap(base, n) {
  const work = mkdtempSync(join(tmpdir(), 'bench-ae-'));
  try {
    cpSync(base, join(work, 'a'), { recursive: true });
    const a = await boot('node-a', join(work, 'a'), args['cpu-a']);
    const b = await boot('node-b', join(work, 'b'), args['cpu-b']);
    try {
      const cb = await Client.open(b.port);
      const before = await cb.stats();
      // The empty node's memory, sampled while it fills: anonymous (the heap and buffers) and in all
      // (which also counts the pages of LMDB's file it has mapped).
      const peak = { anon: 0, all: 0 };
      const sampler = setInterval(() => {
        const m = memoryOf(b.proc.child.pid);
        peak.anon = Math.max(peak.anon, m.anon);
        peak.all = Math.max(peak.all, m.all);
      }, 100);
      const t0 = performance.now();
      const reply = await cb.call(`SYNC 127.0.0.1 ${a.port}`);
      const ms = performance.now() - t0;
      clearInterval(sampler);
      if (reply !== 'OK') throw new Error(`SYNC: ${reply}`);
      const after = await cb.stats();
      const delta = (k) => Number(after.get(k)) - Number(before.get(k));
      const keys = Number((await cb.call('DBSIZE')).replace(/^\D+/, ''));
      // Opened now: a connection idle through a long SYNC would have been closed by the node.
      const ca = await Client.open(a.port);
      const converged = (await ca.call('HASH')) === (await cb.call('HASH'));
      ca.close();
      cb.close();
      return {
        n,
        ms,
        keys,
        bytes: delta('anti_entropy_bytes_sent') + delta('anti_entropy_bytes_received'),
        lowerBound: n * (keyOf(0).length + VALUE_BYTES + 8 + 'node-a'.length),
        rssMb: peakRssMb(b.proc.child.pid),
        anonMb: peak.anon,
        converged,
      };
    } finally {
      await a.proc.stop();
      await b.proc.stop();
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** What one write's Merkle work costs in this process: the item hash and the tree's path update. */
async function treeUpdateCost() {
  const { TreeHasher } = await import(join(root, 'dist/merkle/hash.js'));
  const { MerkleTree } = await import(join(root, 'dist/merkle/tree.js'));
  const hasher = new TreeHasher('bench');
  const tree = new MerkleTree(Number(args.bits));
  const keys = Array.from({ length: 1024 }, (_, i) => Buffer.from(keyOf(i)));
  const val = Buffer.from(value('v', 0));
  const items = keys.map((k) => Buffer.from(hasher.item(k, { wall: 1, counter: 0, node: 'node-a' }, 0, val), 'latin1'));
  // As the store does: the new item hash goes into the record, and the tree reads both from bytes.
  const record = Buffer.alloc(16);
  const runs = [];
  for (let r = 0; r < 5; r++) {
    const count = 200_000;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < count; i++) {
      const k = keys[i & 1023];
      record.write(hasher.item(k, { wall: 2 + i, counter: 0, node: 'node-a' }, 0, val), 0, 16, 'latin1');
      tree.replaceBytes(i & ((1 << Number(args.bits)) - 1), items[i & 1023], 0, record, 0);
    }
    runs.push(Number(process.hrtime.bigint() - t0) / count / 1000);
  }
  const updateOnly = [];
  for (let r = 0; r < 5; r++) {
    const count = 1_000_000;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < count; i++) tree.updateBytes(i & ((1 << Number(args.bits)) - 1), items[i & 1023], 0, 1);
    updateOnly.push(Number(process.hrtime.bigint() - t0) / count / 1000);
  }
  return { hashAndUpdateUs: median(runs), updateUs: median(updateOnly) };
}

const results = [];
const cost = await treeUpdateCost();
console.log(`tree work per write: item hash + path update ${cost.hashAndUpdateUs.toFixed(2)} µs; the path update alone ${cost.updateUs.toFixed(3)} µs`);
for (const n of list(args.n).map(Number)) {
  const base = mkdtempSync(join(tmpdir(), 'bench-ae-base-'));
  try {
    const t0 = performance.now();
    const seed = await boot('node-a', join(base, 'db'), args['cpu-a']);
    const c = await Client.open(seed.port);
    await fill(c, 0, n, 'v');
    c.close();
    await seed.proc.stop();
    // Started once more and stopped, as a node restarted after it has run with its keys: a store this
    // size may keep a deeper tree than the empty one it was filled from (merkle/tree.ts), and the
    // snapshot of its clean stop is then of that tree. The start-up measured below loads it.
    const again = await boot('node-a', join(base, 'db'), args['cpu-a']);
    await again.proc.stop();
    console.log(`n=${n}: wrote ${n} keys in ${((performance.now() - t0) / 1000).toFixed(1)} s (segment_bits ${args.bits}); first start-up after that ${again.startupMs.toFixed(0)} ms`);
    if (args.bootstrap) {
      const runs = [];
      for (let r = 0; r < Number(args.rounds); r++) runs.push(await bootstrap(join(base, 'db'), n));
      const m = (f) => median(runs.map(f));
      const row = {
        n,
        bootstrap: true,
        ms: m((x) => x.ms),
        keys: m((x) => x.keys),
        bytes: m((x) => x.bytes),
        lowerBound: runs[0].lowerBound,
        rssMb: m((x) => x.rssMb),
        anonMb: m((x) => x.anonMb),
        converged: runs.every((x) => x.converged),
      };
      results.push(row);
      console.log(
        `n=${n} bootstrap: ${(row.ms / 1000).toFixed(2)} s (${Math.round(n / (row.ms / 1000))} keys/s), ${row.keys} keys, ${row.bytes} bytes ` +
          `(records ${row.lowerBound}, ratio ${(row.bytes / row.lowerBound).toFixed(2)}), peak RSS ${row.rssMb.toFixed(0)} MB ` +
          `(anonymous ${row.anonMb.toFixed(0)} MB), converged ${row.converged ? 'yes' : 'NO'}`,
      );
    }
    for (const d of list(args.d).map(Number)) {
      const runs = [];
      for (let r = 0; r < Number(args.rounds); r++) runs.push(await scenario(join(base, 'db'), n, d));
      const m = (f) => median(runs.map(f));
      const row = {
        n,
        d,
        ms: m((x) => x.ms),
        cpuMs: m((x) => x.cpuMs),
        roundTrips: m((x) => x.roundTrips),
        bytes: m((x) => x.bytes),
        lowerBound: runs[0].lowerBound,
        keysMoved: m((x) => x.keysMoved),
        converged: runs.every((x) => x.converged),
        startupMs: m((x) => x.startupMs),
      };
      results.push(row);
      const ratio = d === 0 ? '-' : (row.bytes / row.lowerBound).toFixed(2);
      console.log(
        `n=${n} d=${d}: converge ${row.ms.toFixed(1)} ms (CPU of both nodes ${row.cpuMs.toFixed(0)} ms), ${row.roundTrips} round trips, ${row.bytes} bytes ` +
          `(lower bound ${row.lowerBound}, ratio ${ratio}), keys moved ${row.keysMoved}, ` +
          `converged ${row.converged ? 'yes' : 'NO'}, start-up ${row.startupMs.toFixed(0)} ms`,
      );
    }
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}
if (args.json) writeFileSync(args.json, JSON.stringify({ treeUpdate: cost, results }, null, 2));
