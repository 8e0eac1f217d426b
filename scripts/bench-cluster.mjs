// Replication benchmark: three MerkleKV nodes (pinned to one CPU) replicating through the embedded Aedes
// broker or a Mosquitto started here, the load generator on the other CPU.
//
//   npm run bench:cluster -- [--brokers embedded,mosquitto] [--rounds 3] [--duration 3] [--lag-samples 300]
//                            [--fsync periodic|always] [--cli dist/cli.js] [--signed off|on|both]
//                            [--op set|inc|sadd:N|saddrem:N]
//
// --signed on gives every node a cluster_secret, so replication messages are signed and checked; both
// runs the cluster both ways in each round (alternating which goes first) for a side-by-side figure.
// --cli runs another build's nodes (e.g. a worktree of the previous commit) for a comparison.
// --op inc drives INC on 10k counters instead of SET (replicated as per-node totals, merged on replicas;
// the replica CPU per applied op is then the merge cost). --op sadd:100000 drives SADD of random members of
// one set of 100,000 members (saddrem:N: half SADD, half SREM); each is replicated as one member record.
//
// For each broker it reports, as medians over the rounds:
//   - SET throughput on node 1 with replication, beside the same node alone (replication off);
//   - server CPU per write (user + system, all threads, from /proc) at 50 connections x depth 32: on the
//     node alone, on the origin with replication on, and on each replica per write it applied;
//   - writes lost: keys whose value on nodes 2 and 3 differs from node 1 once replication has settled;
//   - replication lag at light load: from sending SET to node 1 until node 2 answers GET with the value,
//     beside the SET's own reply time and the time a subscriber on the broker got node 1's message.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { cpuSecondsOf, freePort, list, median, quantile, root, runLoad, startProcess, waitReady } from './bench-lib.mjs';

const { values: args } = parseArgs({
  options: {
    brokers: { type: 'string', default: 'embedded,mosquitto' },
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '3' },
    'lag-samples': { type: 'string', default: '300' },
    'server-cpu': { type: 'string', default: '0' },
    'client-cpu': { type: 'string', default: '1' },
    fsync: { type: 'string' },
    cli: { type: 'string', default: join(root, 'dist/cli.js') },
    signed: { type: 'string', default: 'off' },
    op: { type: 'string', default: 'set' },
  },
});

// Extra flags for the node processes, e.g. BENCH_NODE_FLAGS='--cpu-prof --cpu-prof-dir=prof' to profile.
const nodeFlags = (process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean);

/** A minimal line client: one request at a time. */
async function lineClient(port) {
  const socket = connect({ port, host: '127.0.0.1', noDelay: true });
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let buffered = '';
  let waiter = null;
  socket.setEncoding('utf8');
  socket.on('data', (d) => {
    buffered += d;
    if (waiter) waiter();
  });
  const readLine = async () => {
    for (;;) {
      const i = buffered.indexOf('\r\n');
      if (i !== -1) {
        const line = buffered.slice(0, i);
        buffered = buffered.slice(i + 2);
        return line;
      }
      await new Promise((r) => (waiter = r));
      waiter = null;
    }
  };
  return {
    async call(line) {
      socket.write(`${line}\r\n`);
      return readLine();
    },
    readLine,
    close: () => socket.destroy(),
  };
}

async function startMosquitto(dir) {
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\npersistence false\nmax_queued_messages 1000000\n${process.getuid?.() === 0 ? 'user root\n' : ''}`);
  const proc = startProcess(args['server-cpu'], 'mosquitto', ['-c', conf]);
  await waitReady(port);
  return { url: `mqtt://127.0.0.1:${port}`, stop: () => proc.stop() };
}

/** Starts nodes node-1..node-n; node 1 runs the broker when `brokerUrl` is undefined. */
async function startNodes(n, dir, brokerUrl, secret = '') {
  const nodes = [];
  let url = brokerUrl;
  for (let i = 1; i <= n; i++) {
    const port = await freePort();
    const env = { MERKLE_KV_MQTT_ENABLED: n > 1 ? 'true' : 'false', ...(secret ? { MERKLE_KV_CLUSTER_SECRET: secret } : {}) };
    if (n > 1 && url === undefined) {
      const mqttPort = await freePort();
      Object.assign(env, { MERKLE_KV_MQTT_EMBEDDED_ENABLED: 'true', MERKLE_KV_MQTT_EMBEDDED_PORT: String(mqttPort) });
      url = `mqtt://127.0.0.1:${mqttPort}`;
    } else if (n > 1) {
      env.MERKLE_KV_MQTT_BROKER_ADDRESS = url;
    }
    const proc = startProcess(args['server-cpu'], process.execPath, [
      ...nodeFlags,
      args.cli, '--node-id', `node-${i}`, '--port', String(port), '--data-dir', join(dir, `node-${i}`), '--log-level', 'warn',
      // Only when asked: a build from before `[storage] fsync` has no such flag.
      ...(args.fsync ? ['--fsync', args.fsync] : []),
    ], env);
    await waitReady(port);
    nodes.push({ port, pid: proc.child.pid, brokerUrl: url, stop: () => proc.stop() });
  }
  if (n > 1) {
    for (const node of nodes) {
      const c = await lineClient(node.port);
      for (let i = 0; i < 200; i++) {
        const stats = await statsOf(c);
        if (stats.replication_subscribed === '1') break;
        await new Promise((r) => setTimeout(r, 50));
      }
      c.close();
    }
  }
  return nodes;
}

/** Every STATS section (`STATS all`; a build from before sections answers bare STATS with all of them). */
async function statsOf(c) {
  const out = {};
  if ((await c.call('STATS all')).startsWith('ERROR')) await c.call('STATS');
  for (let line = await c.readLine(); line !== 'END'; line = await c.readLine()) {
    const i = line.indexOf(':');
    out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

/** Every key and value of a node, via SCAN and MGET. */
async function contents(port) {
  const c = await lineClient(port);
  const header = await c.call('SCAN');
  const n = Number(header.split(' ')[1]);
  const keys = [];
  for (let i = 0; i < n; i++) keys.push(await c.readLine());
  const map = new Map();
  for (let i = 0; i < keys.length; i += 500) {
    const chunk = keys.slice(i, i + 500);
    const head = await c.call(`MGET ${chunk.join(' ')}`);
    if (head === 'NOT_FOUND') continue;
    for (let j = 0; j < chunk.length; j++) {
      const line = await c.readLine();
      const sp = line.indexOf(' ');
      const value = line.slice(sp + 1);
      if (value !== 'NOT_FOUND') map.set(line.slice(0, sp), value);
    }
  }
  if (SET_OP !== undefined) map.set(`set:${SET_OP}`, (await members(c, `set:${SET_OP}`)).join(','));
  c.close();
  return map;
}

async function members(c, key) {
  const header = await c.call(`SMEMBERS ${key}`);
  const list = [];
  for (let n = Number(header.split(' ')[1]); n > 0; n--) list.push(await c.readLine());
  return list;
}

/** Keys whose value on `port` differs from `reference`, after waiting up to 15 s for them to agree. */
async function lostWrites(reference, port) {
  let diff = Infinity;
  for (let t = 0; t < 30 && diff > 0; t++) {
    const other = await contents(port);
    diff = 0;
    for (const [k, v] of reference) if (other.get(k) !== v) diff++;
    if (diff > 0) await new Promise((r) => setTimeout(r, 500));
  }
  return diff;
}

/**
 * Light load: one SET at a time on A, then GET on B until it answers with the value. Per sample, in µs
 * from sending the SET: `lag` until B shows the value, `ack` until A answered OK, and `seen` until an
 * MQTT subscriber of A's topic on the broker got the message (the hop from A through the broker); so
 * visible - seen is the replica's part (delivery to B, apply, and the GET that saw it). B is asked every
 * 0.1 ms, which bounds the resolution.
 */
const POLL_MS = 0.1;

async function lag(aPort, bPort, samples, brokerUrl) {
  const a = await lineClient(aPort);
  const b = await lineClient(bPort);
  const watcher = mqtt.connect(brokerUrl, { clientId: `bench-lag-${process.pid}`, clean: true });
  await new Promise((resolve, reject) => {
    watcher.once('connect', resolve);
    watcher.once('error', reject);
  });
  watcher.stream.setNoDelay?.(true);
  const seenAt = new Map();
  watcher.on('message', (_topic, payload) => {
    const at = performance.now();
    for (const m of payload.toString().matchAll(/"key":"(lag:[^"]*)"/g)) seenAt.set(m[1], at);
  });
  await watcher.subscribeAsync('merkle-kv/updates/node-1', { qos: 0 });
  const out = { lag: [], ack: [], seen: [] };
  for (let i = 0; i < samples; i++) {
    const key = `lag:${i}:${Date.now()}`;
    const t0 = performance.now();
    let ackAt = 0;
    const stored = a.call(`SET ${key} v${i}`).then(() => (ackAt = performance.now()));
    for (;;) {
      const reply = await b.call(`GET ${key}`);
      if (reply.startsWith('VALUE')) break;
      if (performance.now() - t0 > 5000) throw new Error('no replication within 5 s');
      // Not back to back: the nodes share one CPU, and a replica answering GETs without pause would take
      // it from the origin and the broker whose latency this measures. Waits on the generator's CPU.
      const until = performance.now() + POLL_MS;
      while (performance.now() < until) await new Promise((r) => setImmediate(r));
    }
    out.lag.push((performance.now() - t0) * 1000);
    await stored;
    out.ack.push((ackAt - t0) * 1000);
    await new Promise((r) => setTimeout(r, 5));
    out.seen.push(((seenAt.get(key) ?? NaN) - t0) * 1000);
  }
  a.close();
  b.close();
  await watcher.endAsync();
  return out;
}

const opMatch = /^(set|inc|sadd|saddrem)(?::(\d+))?$/.exec(args.op);
if (opMatch === null || (opMatch[1].startsWith('sadd') !== (opMatch[2] !== undefined))) throw new Error('--op must be set, inc, sadd:N or saddrem:N');
const OP = opMatch[1] === 'saddrem' ? 'SADD/SREM' : opMatch[1].toUpperCase();
/** The set size of a set op. */
const SET_OP = opMatch[2];
const setLoad = (node, conns, depth, preload) =>
  runLoad({ port: node.port, serverPid: node.pid, protocol: 'merkle', op: args.op, conns, depth, duration: Number(args.duration), warmup: 1, threads: 2, preload }, args['client-cpu']);

/** A replica's CPU and applied writes so far, to take the CPU per applied write over a window. */
async function replicaSample(node) {
  const c = await lineClient(node.port);
  const applied = Number((await statsOf(c)).replication_applied_ops);
  c.close();
  return { cpu: cpuSecondsOf(node.pid), applied };
}

const hasMosquitto = spawnSync('sh', ['-c', 'command -v mosquitto']).status === 0;
const variants = { off: [false], on: [true], both: [false, true] }[args.signed];
if (variants === undefined) throw new Error('--signed must be off, on or both');
const rows = [];
for (const broker of list(args.brokers)) {
  if (broker === 'mosquitto' && !hasMosquitto) {
    console.error('mosquitto not installed: skipping (apt-get install mosquitto)');
    continue;
  }
  const alone = { alone1: [], alone32: [], cpuAlone: [] };
  const byVariant = new Map(variants.map((v) => [v, { repl1: [], repl32: [], lost: [], lagP50: [], lagP99: [], ackP50: [], seenP50: [], cpuOrigin: [], cpuReplica: [] }]));
  for (let round = 0; round < Number(args.rounds); round++) {
    const dir = mkdtempSync(join(tmpdir(), 'bench-cluster-'));
    try {
      const [single] = await startNodes(1, join(dir, 'alone'));
      alone.alone1.push((await setLoad(single, 50, 1, false)).opsPerSec);
      const alone32 = await setLoad(single, 50, 32, false);
      alone.alone32.push(alone32.opsPerSec);
      alone.cpuAlone.push(alone32.serverCpuUsPerOp);
      await single.stop();

      for (const signed of round % 2 === 0 ? variants : [...variants].reverse()) {
        const res = byVariant.get(signed);
        const mosq = broker === 'mosquitto' ? await startMosquitto(dir) : undefined;
        const nodes = await startNodes(3, join(dir, `cluster-${signed}`), mosq?.url, signed ? 'bench-secret' : '');
        const lags = await lag(nodes[0].port, nodes[1].port, Number(args['lag-samples']), nodes[1].brokerUrl);
        res.lagP50.push(quantile(lags.lag, 0.5));
        res.lagP99.push(quantile(lags.lag, 0.99));
        res.ackP50.push(quantile(lags.ack, 0.5));
        res.seenP50.push(quantile(lags.seen.filter((x) => !Number.isNaN(x)), 0.5));
        res.repl1.push((await setLoad(nodes[0], 50, 1, false)).opsPerSec);
        const before = await Promise.all(nodes.slice(1).map(replicaSample));
        const repl32 = await setLoad(nodes[0], 50, 32, false);
        res.repl32.push(repl32.opsPerSec);
        res.cpuOrigin.push(repl32.serverCpuUsPerOp);
        // Replicas go on applying after the load stops: wait until they are idle before the second sample.
        await new Promise((r) => setTimeout(r, 1500));
        const after = await Promise.all(nodes.slice(1).map(replicaSample));
        res.cpuReplica.push(median(after.map((a, i) => ((a.cpu - before[i].cpu) * 1e6) / Math.max(1, a.applied - before[i].applied))));
        const reference = await contents(nodes[0].port);
        res.lost.push((await lostWrites(reference, nodes[1].port)) + (await lostWrites(reference, nodes[2].port)));
        for (const n of nodes) await n.stop();
        await mosq?.stop();
        console.error(`  round ${round + 1} ${broker}${signed ? ' signed' : ''}: alone ${Math.round(alone.alone32.at(-1))} / replicated ${Math.round(res.repl32.at(-1))} ${OP}/s (c=50 p=32), lag p50 ${Math.round(res.lagP50.at(-1))}us p99 ${Math.round(res.lagP99.at(-1))}us (OK ${Math.round(res.ackP50.at(-1))}us, on the broker ${Math.round(res.seenP50.at(-1))}us), lost ${res.lost.at(-1)}, cpu us/write alone ${alone.cpuAlone.at(-1).toFixed(1)} origin ${res.cpuOrigin.at(-1).toFixed(1)} replica ${res.cpuReplica.at(-1).toFixed(1)}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  for (const [signed, res] of byVariant) {
    rows.push({ broker: `${broker}${signed ? '+sig' : ''}`, ...Object.fromEntries(Object.entries({ ...alone, ...res }).map(([k, v]) => [k, median(v)])) });
  }
}

console.log(`\nmedians of ${args.rounds} rounds; ${args.cli}; fsync = ${args.fsync ?? 'default'}; ${{ set: 'SET with 100-byte values', inc: 'INC on 10k counters' }[args.op] ?? `${OP} on a set of ${SET_OP} members`}, 50 connections; lag at light load (${args['lag-samples']} samples)`);
console.log('cpu: server CPU us per write at p=32, on the node alone, on the origin with replication on, on a replica per write applied');
console.log('lag: p50 from sending SET to node 1 until node 2 shows it; OK: until node 1 answers; broker: until a subscriber of node 1\'s topic has the message');
console.log(`broker         ${OP}/s alone p=1  replicated  ratio | alone p=32  replicated  ratio | lost | lag p50us  p99us  OK p50 broker p50 lag/OK | cpu alone origin replica`);
for (const r of rows) {
  console.log(
    `${r.broker.padEnd(13)} ${Math.round(r.alone1).toString().padStart(12)} ${Math.round(r.repl1).toString().padStart(11)} ${(r.repl1 / r.alone1).toFixed(2).padStart(6)} |` +
      ` ${Math.round(r.alone32).toString().padStart(10)} ${Math.round(r.repl32).toString().padStart(11)} ${(r.repl32 / r.alone32).toFixed(2).padStart(6)} |` +
      ` ${String(r.lost).padStart(4)} | ${Math.round(r.lagP50).toString().padStart(9)} ${Math.round(r.lagP99).toString().padStart(6)} ${Math.round(r.ackP50).toString().padStart(6)} ${Math.round(r.seenP50).toString().padStart(10)} ${(r.lagP50 / r.ackP50).toFixed(2).padStart(6)} |` +
      ` ${r.cpuAlone.toFixed(1).padStart(9)} ${r.cpuOrigin.toFixed(1).padStart(6)} ${r.cpuReplica.toFixed(1).padStart(7)}`,
  );
}
