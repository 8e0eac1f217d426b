// MerkleKV benchmark: starts each server as its own process pinned to one CPU, drives it with
// scripts/loadgen.mjs pinned to another, alternates the contenders round by round, and prints medians.
//
//   npm run bench -- [--targets merkle,merkle-always,memcached,redis,redis-always,ceiling] [--rounds 3]
//                    [--duration 3] [--warmup 1] [--ops set,get,mix,inc,set:100000,sadd:10,saddrem:100000] [--conns 1,50] [--depths 1,32]
//                    [--threads 2] [--server-cpu 0] [--client-cpu 1] [--connect host:port]
//                    [--baseline DIR] [--json file] [--proto merkle|memcached]
//                    [--memcslap-threads 4] [--memcslap-ops 20000]
//
// Contenders:
//   merkle          MerkleKV, `[storage] fsync = "periodic"` (the default: OK once the write is in the OS)
//   merkle-always   MerkleKV, `fsync = "always"` (OK once the write is on disk)
//   merkle-tls      MerkleKV with `[network.tls]` (a certificate made with openssl for the run)
//   merkle-auth     MerkleKV with `[security] password`; each connection sends AUTH first
//   merkle-metrics  MerkleKV with `[metrics] enabled`, /metrics scraped every second during the run
//   memcached       `memcached -t 1`
//   redis           `appendonly yes`, `appendfsync everysec` (the comparison for the periodic mode)
//   redis-always    `appendonly yes`, `appendfsync always` (the comparison for "always")
//   ceiling         scripts/ceiling-server.mjs: a minimal Node.js line server with fixed replies
//   base            the build in `--baseline DIR` (DIR/dist/cli.js, e.g. a worktree of the previous commit)
// --proto memcached drives MerkleKV builds through their memcached listener ([memcached]) with
// memcached's text protocol, beside a real memcached (targets merkle, merkle-always, base, memcached).
// Then, in every round, libmemcached's memcslap (C, package libmemcached-tools) runs its set and get tests
// against each of them too (--memcslap-threads threads, --memcslap-ops requests each; 0 skips it).
// Ops: set, get, mix and inc pick one of 10,000 keys at random; `set:100000` (or get:, mix:, inc:) one of
// N keys. sadd:N and saddrem:N add (or add and remove) random members of a set of N members.
// Beside ops/s and p50/p99 latency, it prints the server's CPU per operation (user + system, all threads,
// from /proc). With --connect, the single target named by --targets is not started: the generator is
// pointed at that address instead (no CPU figure then).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpuSecondsOf, freePort, hasTaskset, list, median, pinned, root, runLoad as runLoadgen, startProcess, waitReady } from './bench-lib.mjs';
const { values: args } = parseArgs({
  options: {
    targets: { type: 'string', default: 'merkle,merkle-always,memcached,redis,redis-always,ceiling' },
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
    baseline: { type: 'string' },
    json: { type: 'string' },
    proto: { type: 'string', default: 'merkle' },
    'memcslap-threads': { type: 'string', default: '4' },
    'memcslap-ops': { type: 'string', default: '20000' },
  },
});

const targets = list(args.targets);
if (!['merkle', 'memcached'].includes(args.proto)) throw new Error('--proto must be merkle or memcached');
if (args.proto === 'memcached' && targets.some((t) => t.startsWith('redis') || t === 'ceiling')) {
  throw new Error('--proto memcached: Redis and the ceiling server speak no memcached; leave them out of --targets');
}
const fmtCpu = (us) => (us === undefined ? '-' : us.toFixed(1));
/** memcslap reports no latencies. */
const fmtUs = (us) => (Number.isNaN(us) ? '-' : us.toFixed(0));

/** Starts one contender; returns its port and a stop function. */
async function startServer(target) {
  if (args.connect) {
    const [host, port] = args.connect.split(':');
    if (host !== '127.0.0.1' && host !== 'localhost') throw new Error('--connect must name a loopback address');
    return { port: Number(port), pid: undefined, client: {}, stop: async () => {} };
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), `bench-${target}-`));
  let cmd = process.execPath;
  let cmdArgs;
  const redis = (fsync) => ['--port', String(port), '--bind', '127.0.0.1', '--appendonly', 'yes', '--appendfsync', fsync, '--save', '', '--dir', dir, '--protected-mode', 'no'];
  const merkle = (cli, fsync) => [cli, '--node-id', 'bench', '--port', String(port), '--data-dir', join(dir, 'db'), '--log-level', 'warn', ...(fsync ? ['--fsync', fsync] : [])];
  let client = {};
  let env = {};
  let metricsPort;
  if (target === 'merkle') {
    cmdArgs = merkle(join(root, 'dist/cli.js'), 'periodic');
  } else if (target === 'merkle-tls') {
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '1'], { stdio: 'ignore' });
    cmdArgs = merkle(join(root, 'dist/cli.js'), 'periodic');
    env = { MERKLE_KV_NETWORK_TLS_ENABLED: 'true', MERKLE_KV_NETWORK_TLS_CERT_FILE: cert, MERKLE_KV_NETWORK_TLS_KEY_FILE: key };
    client = { tlsCa: readFileSync(cert, 'utf8') };
  } else if (target === 'merkle-auth') {
    cmdArgs = merkle(join(root, 'dist/cli.js'), 'periodic');
    env = { MERKLE_KV_SECURITY_PASSWORD: 'bench-password' };
    client = { auth: 'bench-password' };
  } else if (target === 'merkle-always') {
    cmdArgs = merkle(join(root, 'dist/cli.js'), 'always');
  } else if (target === 'merkle-metrics') {
    cmdArgs = merkle(join(root, 'dist/cli.js'), 'periodic');
    metricsPort = await freePort();
    env = { MERKLE_KV_METRICS_ENABLED: 'true', MERKLE_KV_METRICS_PORT: String(metricsPort) };
  } else if (target === 'base') {
    if (!args.baseline) throw new Error('target base needs --baseline DIR');
    cmdArgs = merkle(join(args.baseline, 'dist/cli.js'));
  } else if (target === 'ceiling') {
    cmdArgs = [join(root, 'scripts/ceiling-server.mjs'), String(port)];
  } else if (target === 'memcached') {
    cmd = 'memcached';
    cmdArgs = ['-t', '1', '-p', String(port), '-U', '0', '-l', '127.0.0.1', '-m', '1024', '-c', '4096', '-u', 'root'];
  } else if (target === 'redis') {
    cmd = 'redis-server';
    cmdArgs = redis('everysec');
  } else if (target === 'redis-always') {
    cmd = 'redis-server';
    cmdArgs = redis('always');
  } else {
    throw new Error(`unknown target ${target}`);
  }
  // --proto memcached: MerkleKV builds are driven through their memcached listener.
  const mcPort = args.proto === 'memcached' && (target.startsWith('merkle') || target === 'base') ? await freePort() : undefined;
  if (mcPort !== undefined) Object.assign(env, { MERKLE_KV_MEMCACHED_ENABLED: 'true', MERKLE_KV_MEMCACHED_PORT: String(mcPort) });
  const proc = startProcess(args['server-cpu'], cmd, cmdArgs, { MERKLE_KV_MQTT_ENABLED: 'false', ...env });
  await waitReady(port);
  if (mcPort !== undefined) await waitReady(mcPort);
  // merkle-metrics is scraped every second, as a busy Prometheus would.
  const scraper = metricsPort === undefined ? undefined : setInterval(() => {
    fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text(), () => {});
  }, 1000);
  return {
    port: mcPort ?? port,
    pid: proc.child.pid,
    client,
    async stop() {
      clearInterval(scraper);
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The protocol the generator speaks to a target. */
function protocolOf(target) {
  if (target.startsWith('redis')) return 'redis';
  if (target === 'memcached' || args.proto === 'memcached') return 'memcached';
  return 'merkle';
}

/** `set:100000` is SET over 100,000 keys (the default is 10,000); `sadd:N` is the generator's own. */
function keyspaceOf(op) {
  const m = /^(set|get|mix|inc):(\d+)$/.exec(op);
  return m === null ? { op, keys: DEFAULT_KEYS } : { op: m[1], keys: Number(m[2]) };
}
const DEFAULT_KEYS = 10_000;

function runLoad(server, target, op, conns, depth, preload) {
  const cfg = {
    port: server.port,
    serverPid: server.pid,
    protocol: protocolOf(target),
    ...keyspaceOf(op),
    conns,
    depth,
    duration: Number(args.duration),
    warmup: Number(args.warmup),
    threads: conns > 1 ? Number(args.threads) : 1,
    preload,
    ...server.client,
  };
  return runLoadgen(cfg, args['client-cpu']);
}

/** memcslap's own timing of its set or get phase; the server CPU is measured for set only (get sets first). */
function runMemcslap(server, test) {
  const threads = Number(args['memcslap-threads']);
  const [cmd, cmdArgs] = pinned(args['client-cpu'], 'memcslap', [`--servers=127.0.0.1:${server.port}`, `--concurrency=${threads}`,
    `--execute-number=${args['memcslap-ops']}`, `--test=${test}`, '--tcp-nodelay']);
  const cpuBefore = server.pid === undefined ? undefined : cpuSecondsOf(server.pid);
  const out = execFileSync(cmd, cmdArgs, { encoding: 'utf8', timeout: 120_000 });
  const cpu = server.pid === undefined ? undefined : cpuSecondsOf(server.pid) - cpuBefore;
  const m = new RegExp(`Time to ${test}\\s+(\\d+) keys by\\s+\\d+ threads:\\s+([\\d.]+) seconds`).exec(out);
  if (m === null) throw new Error(`memcslap printed no ${test} time:\n${out}`);
  const ops = Number(m[1]);
  const opsPerSec = ops / Math.max(Number(m[2]), 1e-3);
  return { opsPerSec, p50us: NaN, p99us: NaN, serverCpuUsPerOp: test === 'set' && cpu !== undefined ? (cpu * 1e6) / ops : undefined, generatorCpuSeconds: 0, errors: 0 };
}
const memcslap = args.proto === 'memcached' && Number(args['memcslap-ops']) > 0 && (() => {
  try {
    execFileSync('sh', ['-c', 'command -v memcslap'], { stdio: 'ignore' });
    return true;
  } catch {
    console.error('bench: memcslap not found (Debian package libmemcached-tools): skipping it');
    return false;
  }
})();

const scenarios = [];
for (const op of list(args.ops)) for (const conns of list(args.conns).map(Number)) for (const depth of list(args.depths).map(Number)) scenarios.push({ op, conns, depth });
/** memcached has no sets. */
const runs = (target, op) => !(target === 'memcached' && op.startsWith('sadd'));

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
      // Each key space is filled once per server, before its first scenario.
      const loaded = new Set();
      for (const s of scenarios) {
        if (!runs(target, s.op)) continue;
        const key = `${s.op} c=${s.conns} p=${s.depth}`;
        const { keys } = keyspaceOf(s.op);
        const r = await runLoad(server, target, s.op, s.conns, s.depth, !loaded.has(keys));
        loaded.add(keys);
        ((results[key] ??= {})[target] ??= []).push(r);
        console.error(`  round ${round + 1} ${target.padEnd(9)} ${key.padEnd(16)} ${Math.round(r.opsPerSec).toString().padStart(8)} ops/s  p50 ${r.p50us.toFixed(0)}us  p99 ${r.p99us.toFixed(0)}us  cpu/op ${fmtCpu(r.serverCpuUsPerOp)}us  gen-cpu ${r.generatorCpuSeconds.toFixed(1)}s${r.errors ? `  errors ${r.errors}` : ''}`);
      }
      for (const test of memcslap ? ['set', 'get'] : []) {
        const key = `memcslap ${test} t=${args['memcslap-threads']}`;
        const r = runMemcslap(server, test);
        ((results[key] ??= {})[target] ??= []).push(r);
        console.error(`  round ${round + 1} ${target.padEnd(9)} ${key.padEnd(16)} ${Math.round(r.opsPerSec).toString().padStart(8)} ops/s  cpu/op ${fmtCpu(r.serverCpuUsPerOp)}us`);
      }
    } finally {
      await server.stop();
    }
  }
}

const baseline = targets.includes('memcached') ? 'memcached' : targets[0];
const rows = [];
console.log(`\nmedians of ${rounds} rounds, ${args.duration}s each; 100-byte values, 10k keys unless op:N says N; cpu = server CPU us per op; ratio = ops/s vs ${baseline}`);
console.log(['scenario'.padEnd(18), ...targets.map((t) => `${t}: ops/s  p50us  p99us  cpu  ratio`.padStart(46))].join(''));
for (const [key, byTarget] of Object.entries(results)) {
  const base = median((byTarget[baseline] ?? []).map((r) => r.opsPerSec));
  const cells = targets.map((t) => {
    const runs = byTarget[t] ?? [];
    const ops = median(runs.map((r) => r.opsPerSec));
    const p50 = median(runs.map((r) => r.p50us));
    const p99 = median(runs.map((r) => r.p99us));
    const cpus = runs.map((r) => r.serverCpuUsPerOp).filter((c) => c !== undefined);
    const cpu = cpus.length > 0 ? median(cpus) : undefined;
    rows.push({ scenario: key, target: t, opsPerSec: ops, p50us: p50, p99us: p99, cpuUsPerOp: cpu, ratio: ops / base, runs: runs.map((r) => r.opsPerSec) });
    return `${Math.round(ops).toString().padStart(10)} ${fmtUs(p50).padStart(6)} ${fmtUs(p99).padStart(6)} ${fmtCpu(cpu).padStart(6)} ${(ops / base).toFixed(2).padStart(6)}`.padStart(46);
  });
  console.log([key.padEnd(18), ...cells].join(''));
}
if (args.json) writeFileSync(args.json, JSON.stringify(rows, null, 2));
