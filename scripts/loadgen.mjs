// Load generator for scripts/bench.mjs: closed-loop clients over TCP speaking the MerkleKV line protocol,
// memcached's text protocol or Redis inline commands. Prints one JSON result on stdout.
//
//   node scripts/loadgen.mjs '{"port":7878,"protocol":"merkle","op":"get","conns":50,"depth":32,...}'
//
// MerkleKV only: "tlsCa": "<PEM>" connects over TLS trusting that CA; "auth": "<password>" sends
// `AUTH <password>` on each connection (and waits for its OK) before the load starts.
//
// Set ops (MerkleKV and Redis): "sadd:N" adds a random one of N members to the set set:N, "saddrem:N"
// adds or removes one (half each); the set is first filled with all N members.
//
// Each connection keeps `depth` requests outstanding; after every read it sends as many new requests as
// were answered, in one write. Latency is measured per request, send to reply, in microseconds.
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';

const BUCKET_BASE = 1.02; // 2% latency resolution
const BUCKETS = 1200; // up to ~20 s

function bucketOf(us) {
  return us < 1 ? 0 : Math.min(BUCKETS - 1, Math.floor(Math.log(us) / Math.log(BUCKET_BASE)));
}

export function percentile(hist, total, p) {
  let seen = 0;
  const target = total * p;
  for (let i = 0; i < hist.length; i++) {
    seen += hist[i];
    if (seen >= target) return Math.pow(BUCKET_BASE, i + 0.5);
  }
  return Infinity;
}

/** One connection, over TLS with `cfg.tlsCa`, authenticated with `cfg.auth`. */
async function open(cfg) {
  const socket = await new Promise((resolve, reject) => {
    const s = cfg.tlsCa
      ? connectTls({ port: cfg.port, host: cfg.host, ca: cfg.tlsCa }, () => resolve(s))
      : connect({ port: cfg.port, host: cfg.host, noDelay: true }, () => resolve(s));
    s.on('error', reject);
  });
  socket.setNoDelay(true);
  if (cfg.auth) {
    socket.write(`AUTH ${cfg.auth}\r\n`);
    const reply = await new Promise((resolve) => socket.once('data', (d) => resolve(d.toString())));
    if (reply !== 'OK\r\n') throw new Error(`AUTH answered ${JSON.stringify(reply)}`);
  }
  return socket;
}

function requests(protocol, keys, value) {
  const set = [];
  const get = [];
  // Counters live on keys of their own: the preloaded values are not numbers.
  const inc = [];
  for (let i = 0; i < keys; i++) {
    const key = `key:${i}`;
    if (protocol === 'memcached') {
      set.push(Buffer.from(`set ${key} 0 0 ${value.length}\r\n${value}\r\n`));
      get.push(Buffer.from(`get ${key}\r\n`));
      inc.push(Buffer.from(`incr ctr:${i} 1\r\n`));
    } else {
      // MerkleKV and Redis (inline commands) share the request shape.
      set.push(Buffer.from(`SET ${key} ${value}\r\n`));
      get.push(Buffer.from(`GET ${key}\r\n`));
      inc.push(Buffer.from(`${protocol === 'redis' ? 'INCR' : 'INC'} ctr:${i}\r\n`));
    }
  }
  return { set, get, inc };
}

/**
 * Counts complete replies in a byte stream. Values are 'x' runs, so no value line can look like a
 * reply's first or last line.
 */
function replyCounter(protocol) {
  let tail = Buffer.alloc(0);
  let expectingData = false; // redis: a `$n` header was seen, its data line completes the reply
  return (chunk) => {
    const buf = tail.length > 0 ? Buffer.concat([tail, chunk]) : chunk;
    let done = 0;
    let start = 0;
    for (let nl = buf.indexOf(10, start); nl !== -1; nl = buf.indexOf(10, start)) {
      const first = buf[start];
      if (protocol === 'merkle') {
        done++;
      } else if (protocol === 'memcached') {
        // STORED, END (get done), ERROR...; VALUE header and data lines do not complete a reply.
        if (first !== 0x56 /* V */ && first !== 0x78 /* x */) done++;
      } else if (expectingData) {
        expectingData = false;
        done++;
      } else if (first === 0x24 /* $ */ && buf[start + 1] !== 0x2d /* - */) {
        expectingData = true;
      } else {
        done++;
      }
      start = nl + 1;
    }
    tail = start < buf.length ? Buffer.from(buf.subarray(start)) : Buffer.alloc(0);
    return done;
  };
}

/**
 * CPU seconds (user + system, all threads) the process `pid` has used so far, from /proc/<pid>/stat;
 * undefined when there is no such file (not Linux, or no pid given).
 */
function cpuSecondsOf(pid) {
  if (!pid) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // Fields after the command name (which may hold spaces) start at the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return undefined;
  }
}

async function runWorker(cfg) {
  const value = 'x'.repeat(cfg.valueSize);
  const reqs = requests(cfg.protocol, cfg.keys, value);
  const setOp = parseSetOp(cfg.op);
  const members = setOp === undefined ? undefined : memberNames(setOp.size);
  const hist = new Float64Array(BUCKETS);
  let ops = 0;
  let errors = 0;
  let recording = false;
  let stopping = false;
  const pick = () => {
    const i = Math.floor(Math.random() * cfg.keys);
    if (cfg.op === 'set') return reqs.set[i];
    if (cfg.op === 'get') return reqs.get[i];
    if (cfg.op === 'inc') return reqs.inc[i];
    if (members !== undefined) {
      const m = members[Math.floor(Math.random() * members.length)];
      return Buffer.from(`${setOp.remove && Math.random() < 0.5 ? 'SREM' : 'SADD'} set:${setOp.size} ${m}\r\n`);
    }
    return Math.random() < 0.9 ? reqs.get[i] : reqs.set[i]; // 90/10 mix
  };

  const conns = await Promise.all(Array.from({ length: cfg.conns }, () => open(cfg)));

  const finished = conns.map((socket) => new Promise((resolve) => {
    const sent = new Float64Array(cfg.depth * 2 + 8); // ring of send times
    let head = 0;
    let tailIdx = 0;
    const count = replyCounter(cfg.protocol);
    const send = (n) => {
      if (stopping) return;
      const now = performance.now();
      const bufs = [];
      for (let i = 0; i < n; i++) {
        bufs.push(pick());
        sent[head] = now;
        head = (head + 1) % sent.length;
      }
      socket.write(bufs.length === 1 ? bufs[0] : Buffer.concat(bufs));
    };
    socket.on('data', (chunk) => {
      const n = count(chunk);
      if (n === 0) return;
      const now = performance.now();
      for (let i = 0; i < n; i++) {
        if (recording) {
          hist[bucketOf((now - sent[tailIdx]) * 1000)]++;
          ops++;
        }
        tailIdx = (tailIdx + 1) % sent.length;
      }
      if (stopping && head === tailIdx) {
        socket.destroy();
        resolve();
        return;
      }
      send(n);
    });
    socket.on('error', () => {
      errors++;
      resolve();
    });
    socket.on('close', resolve);
    send(cfg.depth);
  }));

  await new Promise((r) => setTimeout(r, cfg.warmup * 1000));
  recording = true;
  const started = performance.now();
  // Every worker samples the server's CPU over its own window; the windows coincide to a few ms.
  const cpuBefore = cpuSecondsOf(cfg.serverPid);
  await new Promise((r) => setTimeout(r, cfg.duration * 1000));
  recording = false;
  const cpuAfter = cpuSecondsOf(cfg.serverPid);
  const elapsed = (performance.now() - started) / 1000;
  stopping = true;
  const timer = setTimeout(() => conns.forEach((s) => s.destroy()), 5000);
  await Promise.all(finished);
  clearTimeout(timer);
  const serverCpuSeconds = cpuBefore === undefined || cpuAfter === undefined ? undefined : cpuAfter - cpuBefore;
  return { ops, elapsed, errors, serverCpuSeconds, hist: Array.from(hist) };
}

/** "sadd:N" / "saddrem:N": the set's size, and whether half the requests remove. */
function parseSetOp(op) {
  const m = /^(sadd|saddrem):(\d+)$/.exec(op);
  return m === null ? undefined : { size: Number(m[2]), remove: m[1] === 'saddrem' };
}

function memberNames(n) {
  return Array.from({ length: n }, (_, i) => `member:${i}`);
}

/** Writes every key once (pipelined) so GETs hit; fills the set of a set op with all its members. */
async function preload(cfg) {
  const value = 'x'.repeat(cfg.valueSize);
  let { set } = requests(cfg.protocol, cfg.keys, value);
  const setOp = parseSetOp(cfg.op);
  if (setOp !== undefined) {
    const names = memberNames(setOp.size);
    set = [];
    for (let i = 0; i < names.length; i += 100) set.push(Buffer.from(`SADD set:${setOp.size} ${names.slice(i, i + 100).join(' ')}\r\n`));
  }
  const socket = await open(cfg);
  const count = replyCounter(cfg.protocol);
  for (let i = 0; i < set.length; i += 256) {
    const batch = set.slice(i, i + 256);
    let pending = batch.length;
    await new Promise((resolve) => {
      const onData = (chunk) => {
        pending -= count(chunk);
        if (pending <= 0) {
          socket.off('data', onData);
          resolve();
        }
      };
      socket.on('data', onData);
      socket.write(Buffer.concat(batch));
    });
  }
  socket.destroy();
}

async function main() {
  const cfg = {
    host: '127.0.0.1',
    protocol: 'merkle',
    op: 'get',
    conns: 1,
    depth: 1,
    duration: 5,
    warmup: 1,
    keys: 10000,
    valueSize: 100,
    threads: 1,
    preload: true,
    ...JSON.parse(process.argv[2] ?? '{}'),
  };
  if (cfg.preload || parseSetOp(cfg.op) !== undefined) await preload(cfg);
  const threads = Math.max(1, Math.min(cfg.threads, cfg.conns));
  const self = fileURLToPath(import.meta.url);
  const results = await Promise.all(
    Array.from({ length: threads }, (_, t) => {
      const conns = Math.floor(cfg.conns / threads) + (t < cfg.conns % threads ? 1 : 0);
      return new Promise((resolve, reject) => {
        const w = new Worker(self, { workerData: { ...cfg, conns } });
        w.once('message', resolve);
        w.once('error', reject);
      });
    }),
  );
  const hist = new Float64Array(BUCKETS);
  let ops = 0;
  let errors = 0;
  let elapsed = 0;
  for (const r of results) {
    ops += r.ops;
    errors += r.errors;
    elapsed = Math.max(elapsed, r.elapsed);
    r.hist.forEach((v, i) => (hist[i] += v));
  }
  const cpu = process.cpuUsage();
  // The server's CPU per operation: its CPU over the first worker's window, over the operations of all
  // workers in that window (the windows start and end together).
  const first = results[0];
  const serverCpuUsPerOp =
    first?.serverCpuSeconds === undefined || ops === 0 ? undefined : (first.serverCpuSeconds * 1e6 * (elapsed / first.elapsed)) / ops;
  process.stdout.write(
    JSON.stringify({
      opsPerSec: ops / elapsed,
      serverCpuUsPerOp,
      p50us: percentile(hist, ops, 0.5),
      p99us: percentile(hist, ops, 0.99),
      ops,
      errors,
      generatorCpuSeconds: (cpu.user + cpu.system) / 1e6,
    }) + '\n',
  );
}

if (isMainThread) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
} else {
  runWorker(workerData).then((r) => parentPort.postMessage(r));
}
