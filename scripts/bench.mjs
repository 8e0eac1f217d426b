// MerkleKV benchmark: starts each server as its own process pinned to one CPU, drives it with
// scripts/loadgen.mjs pinned to another, alternates the contenders round by round, and prints medians.
//
//   npm run bench -- [--targets merkle,memcached,redis] [--rounds 3] [--duration 3] [--warmup 1]
//                    [--ops set,get,mix] [--conns 1,50] [--depths 1,32] [--threads 2]
//                    [--server-cpu 0] [--client-cpu 1] [--connect host:port] [--json file]
//
// memcached runs as `memcached -t 1`; Redis with `appendonly yes`, `appendfsync everysec` (the durable
// comparison for SET). MerkleKV acknowledges a SET only after LMDB has synced it. With --connect, the
// single target named by --targets is not started: the generator is pointed at that address instead.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, hasTaskset, list, median, root, runLoad as runLoadgen, startProcess, waitReady } from './bench-lib.mjs';
const { values: args } = parseArgs({
  options: {
    targets: { type: 'string', default: 'merkle,memcached,redis' },
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '1' },
    ops: { type: 'string', default: 'set,get,mix' },
    conns: { type: 'string', default: '1,50' },
    depths: { type: 'string', default: '1,32' },
    threads: { type: 'string', default: '2' },
    'server-cpu': { type: 'string', default: '0' },
    'client-cpu': { type: 'string', default: '1' },
    connect: { type: 'string' },
    json: { type: 'string' },
  },
});

const targets = list(args.targets);

/** Starts one contender; returns its port and a stop function. */
async function startServer(target) {
  if (args.connect) {
    const [host, port] = args.connect.split(':');
    if (host !== '127.0.0.1' && host !== 'localhost') throw new Error('--connect must name a loopback address');
    return { port: Number(port), stop: async () => {} };
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), `bench-${target}-`));
  let cmd;
  let cmdArgs;
  if (target === 'merkle') {
    cmd = process.execPath;
    cmdArgs = [join(root, 'dist/cli.js'), '--node-id', 'bench', '--port', String(port), '--data-dir', join(dir, 'db'), '--log-level', 'warn'];
  } else if (target === 'memcached') {
    cmd = 'memcached';
    cmdArgs = ['-t', '1', '-p', String(port), '-U', '0', '-l', '127.0.0.1', '-m', '1024', '-c', '4096', '-u', 'root'];
  } else if (target === 'redis') {
    cmd = 'redis-server';
    cmdArgs = ['--port', String(port), '--bind', '127.0.0.1', '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '', '--dir', dir, '--protected-mode', 'no'];
  } else {
    throw new Error(`unknown target ${target}`);
  }
  const proc = startProcess(args['server-cpu'], cmd, cmdArgs, { MERKLE_KV_MQTT_ENABLED: 'false' });
  await waitReady(port);
  return {
    port,
    async stop() {
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function runLoad(port, target, op, conns, depth, preload) {
  const cfg = {
    port,
    protocol: target === 'merkle' ? 'merkle' : target,
    op,
    conns,
    depth,
    duration: Number(args.duration),
    warmup: Number(args.warmup),
    threads: conns > 1 ? Number(args.threads) : 1,
    preload,
  };
  return runLoadgen(cfg, args['client-cpu']);
}

const scenarios = [];
for (const op of list(args.ops)) for (const conns of list(args.conns).map(Number)) for (const depth of list(args.depths).map(Number)) scenarios.push({ op, conns, depth });

const results = {}; // scenario key -> target -> [runs]
const rounds = Number(args.rounds);
console.error(`bench: ${targets.join(', ')}; ${rounds} rounds x ${scenarios.length} scenarios x ${args.duration}s; ` +
  (hasTaskset ? `server on CPU ${args['server-cpu']}, generator on CPU ${args['client-cpu']}` : 'taskset not found: not pinned'));
for (let round = 0; round < rounds; round++) {
  // Alternate the order so no contender always runs first (or last) on a noisy machine.
  const order = round % 2 === 0 ? targets : [...targets].reverse();
  for (const target of order) {
    const server = await startServer(target);
    try {
      let loaded = false;
      for (const s of scenarios) {
        const key = `${s.op} c=${s.conns} p=${s.depth}`;
        const r = await runLoad(server.port, target, s.op, s.conns, s.depth, !loaded);
        loaded = true;
        ((results[key] ??= {})[target] ??= []).push(r);
        console.error(`  round ${round + 1} ${target.padEnd(9)} ${key.padEnd(16)} ${Math.round(r.opsPerSec).toString().padStart(8)} ops/s  p50 ${r.p50us.toFixed(0)}us  p99 ${r.p99us.toFixed(0)}us  gen-cpu ${r.generatorCpuSeconds.toFixed(1)}s${r.errors ? `  errors ${r.errors}` : ''}`);
      }
    } finally {
      await server.stop();
    }
  }
}

const baseline = targets.includes('memcached') ? 'memcached' : targets[0];
const rows = [];
console.log(`\nmedians of ${rounds} rounds, ${args.duration}s each; 100-byte values, 10k keys; ratio = ops/s vs ${baseline}`);
console.log(['scenario'.padEnd(18), ...targets.map((t) => `${t} ops/s  p50us  p99us  ratio`.padStart(36))].join(''));
for (const [key, byTarget] of Object.entries(results)) {
  const base = median((byTarget[baseline] ?? []).map((r) => r.opsPerSec));
  const cells = targets.map((t) => {
    const runs = byTarget[t] ?? [];
    const ops = median(runs.map((r) => r.opsPerSec));
    const p50 = median(runs.map((r) => r.p50us));
    const p99 = median(runs.map((r) => r.p99us));
    rows.push({ scenario: key, target: t, opsPerSec: ops, p50us: p50, p99us: p99, ratio: ops / base, runs: runs.map((r) => r.opsPerSec) });
    return `${Math.round(ops).toString().padStart(10)} ${p50.toFixed(0).padStart(6)} ${p99.toFixed(0).padStart(6)} ${(ops / base).toFixed(2).padStart(6)}`.padStart(36);
  });
  console.log([key.padEnd(18), ...cells].join(''));
}
if (args.json) writeFileSync(args.json, JSON.stringify(rows, null, 2));
