// A local three-node cluster in the foreground: `npm run cluster`.
//
//   npm run cluster -- [--ports 7878,7879,7880] [--metrics-ports 9178,9179,9180|off] [--mqtt-port 1883]
//                      [--broker auto|mosquitto|embedded] [--data-dir ./data/cluster]
//
// Replication goes through a Mosquitto started here when `mosquitto` is installed (--broker auto),
// otherwise through the broker embedded in node-1. Every node lists the others as anti-entropy peers.
// All logs come out on stdout, one line each, prefixed with who wrote it. Ctrl-C (SIGINT) or SIGTERM
// stops the nodes (each finishes what is in flight), then the broker; the data stays for next time.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { list, root, waitReady } from './bench-lib.mjs';

const { values: args } = parseArgs({
  options: {
    ports: { type: 'string', default: '7878,7879,7880' },
    'metrics-ports': { type: 'string', default: '9178,9179,9180' },
    'mqtt-port': { type: 'string', default: '1883' },
    broker: { type: 'string', default: 'auto' },
    'data-dir': { type: 'string', default: './data/cluster' },
  },
});

const ports = list(args.ports).map(Number);
const metricsPorts = args['metrics-ports'] === 'off' ? [] : list(args['metrics-ports']).map(Number);
const mqttPort = Number(args['mqtt-port']);
const dataDir = resolve(args['data-dir']);
const hasMosquitto = spawnSync('sh', ['-c', 'command -v mosquitto']).status === 0;
const broker = args.broker === 'auto' ? (hasMosquitto ? 'mosquitto' : 'embedded') : args.broker;
if (!['mosquitto', 'embedded'].includes(broker)) fail(`--broker must be auto, mosquitto or embedded`);
if (broker === 'mosquitto' && !hasMosquitto) fail('mosquitto is not installed (apt-get install mosquitto)');
if (ports.length < 1 || ports.some((p) => !(p > 0 && p < 65536))) fail('--ports must list ports in 1..65535');
if (metricsPorts.length > 0 && metricsPorts.length !== ports.length) fail('--metrics-ports must list one port per node, or be off');

const children = [];
let stopping = false;

function fail(message) {
  process.stderr.write(`cluster: ${message}\n`);
  process.exit(2);
}

/** Starts a process whose output lines come out on stdout behind `[name] `. */
function start(name, cmd, cmdArgs, env = {}) {
  // A process group of its own: Ctrl-C in a terminal signals only this script, which then stops the
  // nodes once each (a node takes a second signal as "exit at once").
  const child = spawn(cmd, cmdArgs, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (line) => process.stdout.write(`[${name}] ${line}\n`));
  }
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal)));
  exited.then((how) => {
    if (!stopping) {
      process.stdout.write(`[cluster] ${name} exited (${how}) on its own: stopping the rest\n`);
      void stopAll(1);
    }
  });
  const entry = { name, child, exited };
  children.push(entry);
  return entry;
}

/** Waits for `what` to open `port`; if it never does, stops everything. */
async function ready(port, what) {
  try {
    await waitReady(port);
  } catch {
    process.stdout.write(`[cluster] ${what} did not open port ${port}\n`);
    await stopAll(1);
  }
}

/** Nodes first (each answers what is in flight and closes its store), then the broker. */
async function stopAll(code) {
  if (stopping) return;
  stopping = true;
  process.stdout.write('[cluster] stopping\n');
  const stop = async (c) => {
    if (c.child.exitCode !== null || c.child.signalCode !== null) return;
    c.child.kill('SIGTERM');
    const timer = setTimeout(() => c.child.kill('SIGKILL'), 10_000);
    await c.exited;
    clearTimeout(timer);
  };
  await Promise.all(children.filter((c) => c.name !== 'mosquitto').map(stop));
  for (const c of children.filter((c) => c.name === 'mosquitto')) await stop(c);
  process.stdout.write('[cluster] stopped\n');
  process.exit(code);
}

process.on('SIGINT', () => void stopAll(0));
process.on('SIGTERM', () => void stopAll(0));
// Should this script die some other way, its children (in their own groups) must not outlive it.
process.on('exit', () => {
  for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
});

mkdirSync(dataDir, { recursive: true });
const brokerUrl = `mqtt://127.0.0.1:${mqttPort}`;
if (broker === 'mosquitto') {
  const conf = join(dataDir, 'mosquitto.conf');
  mkdirSync(join(dataDir, 'mosquitto'), { recursive: true });
  writeFileSync(
    conf,
    [
      `listener ${mqttPort} 127.0.0.1`,
      'allow_anonymous true',
      'set_tcp_nodelay true',
      // Nodes keep persistent sessions: what a stopped node missed waits for it here, across restarts.
      'persistence true',
      `persistence_location ${join(dataDir, 'mosquitto')}/`,
      'max_queued_messages 100000',
      ...(process.getuid?.() === 0 ? ['user root'] : []),
      '',
    ].join('\n'),
  );
  start('mosquitto', 'mosquitto', ['-c', conf]);
  await ready(mqttPort, 'mosquitto');
}

for (let i = 0; i < ports.length; i++) {
  const id = `node-${i + 1}`;
  const env = {
    MERKLE_KV_NODE_ID: id,
    MERKLE_KV_NETWORK_BIND_PORT: String(ports[i]),
    MERKLE_KV_STORAGE_PATH: join(dataDir, id),
    MERKLE_KV_MQTT_ENABLED: 'true',
    MERKLE_KV_MQTT_BROKER_ADDRESS: brokerUrl,
    MERKLE_KV_ANTI_ENTROPY_PEER_LIST: ports.filter((_, j) => j !== i).map((p) => `127.0.0.1:${p}`).join(','),
    MERKLE_KV_LOGGING_FORMAT: 'text',
    ...(metricsPorts.length > 0 ? { MERKLE_KV_METRICS_ENABLED: 'true', MERKLE_KV_METRICS_PORT: String(metricsPorts[i]) } : {}),
    ...(broker === 'embedded' && i === 0 ? { MERKLE_KV_MQTT_EMBEDDED_ENABLED: 'true', MERKLE_KV_MQTT_EMBEDDED_PORT: String(mqttPort) } : {}),
  };
  start(id, process.execPath, [join(root, 'dist/cli.js')], env);
  await ready(ports[i], id);
}
if (!stopping) {
  const lines = [
    `[cluster] ${ports.length} nodes up, replicating through ${broker === 'mosquitto' ? 'Mosquitto' : 'the broker embedded in node-1'} at ${brokerUrl}; data in ${dataDir}`,
    ...ports.map((p, i) => `[cluster]   node-${i + 1}: nc 127.0.0.1 ${p}   or   npx merkle-kv cli -p ${p}${metricsPorts.length > 0 ? `   metrics http://127.0.0.1:${metricsPorts[i]}/metrics` : ''}`),
    `[cluster] watch replication: mosquitto_sub -h 127.0.0.1 -p ${mqttPort} -t 'merkle-kv/#' -v`,
    '[cluster] Ctrl-C stops everything',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}
