import { connect } from 'node:net';
import { checkHistory, converged, type FaultWindow } from './check.js';
import { FaultCluster } from './cluster.js';
import { readState, Workload, type NodeState } from './workload.js';

/**
 * Cycles of: the workload runs while faults are injected one after another (each held, then healed);
 * then the workload stops, every link is healed, and the nodes must converge; the history is checked.
 */
export type FaultKind = 'kill' | 'broker' | 'broker-partition' | 'peer-partition' | 'slow-client' | 'disk-full';

export interface ScenarioOptions {
  readonly broker: 'mosquitto' | 'embedded';
  readonly cycles: number;
  /** How long the workload runs with faults in each cycle. */
  readonly cycleMs: number;
  readonly faults: readonly FaultKind[];
  readonly clients: number;
  /** Node 2's wall clock runs this far off (MERKLEKV_TEST_CLOCK_SKEW_MS). */
  readonly skewMs: number;
  readonly holdMs: number;
  readonly seed: number;
  readonly log?: (line: string) => void;
}

export interface ScenarioSummary {
  readonly operations: number;
  readonly acked: number;
  readonly unknown: number;
  readonly failed: number;
  readonly faults: Record<string, number>;
  /** Per cycle: ms from the last heal until every node held the same. */
  readonly convergenceMs: number[];
  readonly problems: string[];
  readonly crashes: string[];
  readonly appendsReplaced: number;
  readonly rssPeakBytes: number;
}

/** After a fault is healed, the cluster may take this long to settle (anti-entropy runs every second). */
const SETTLE_MS = 3000;
const CONVERGENCE_TIMEOUT_MS = 60_000;
const NODES = 3;
const DISK_NODE = 1;

export async function runScenario(opts: ScenarioOptions): Promise<ScenarioSummary> {
  const log = opts.log ?? (() => {});
  // Node 1's data directory is on a small disk that the disk-full fault fills.
  const smallDisk = opts.faults.includes('disk-full') ? { smallDisk: DISK_NODE } : {};
  const cluster = await FaultCluster.start({ nodes: NODES, broker: opts.broker, antiEntropySeconds: 1, skewMs: { 2: opts.skewMs }, ...smallDisk });
  const ports = cluster.nodes.map((m) => m.port);
  const faults: Record<string, number> = {};
  const convergenceMs: number[] = [];
  const problems: string[] = [];
  let operations = 0;
  let acked = 0;
  let unknown = 0;
  let failed = 0;
  let appendsReplaced = 0;
  let rssPeak = 0;
  const sampler = setInterval(() => {
    for (let i = 0; i < NODES; i++) rssPeak = Math.max(rssPeak, cluster.rss(i));
  }, 250);
  let f = 0;
  try {
    for (let cycle = 0; cycle < opts.cycles; cycle++) {
      const ns = `y${cycle}:`;
      const workload = new Workload({ clients: opts.clients, ports, isUp: (i) => cluster.isUp(i), seed: opts.seed + cycle, ns });
      const windows: FaultWindow[] = [];
      workload.start();
      const until = Date.now() + opts.cycleMs;
      let lastHeal = Date.now();
      while (Date.now() < until) {
        await new Promise((r) => setTimeout(r, opts.holdMs / 2));
        const kind = opts.faults[f++ % opts.faults.length] as FaultKind;
        // Node 0 hosts the embedded broker: its faults are the broker's.
        const target = opts.broker === 'embedded' ? 1 + (f % (NODES - 1)) : f % NODES;
        const start = Date.now();
        log(`cycle ${cycle + 1}: ${kind}${kind === 'broker' ? '' : ` node ${kind === 'disk-full' ? DISK_NODE : target}`}`);
        await inject(cluster, opts, kind, target);
        lastHeal = Date.now();
        windows.push({ kind, start, end: lastHeal + SETTLE_MS });
        faults[kind] = (faults[kind] ?? 0) + 1;
      }
      await workload.stop();
      cluster.healAll();
      await cluster.ready();
      const states = await convergedStates(ports, ns);
      convergenceMs.push(Date.now() - lastHeal);
      const report = checkHistory(workload.history, states[0] as NodeState, windows, { slackMs: 250 + Math.abs(opts.skewMs), clients: opts.clients });
      problems.push(...report.problems.map((p) => `cycle ${cycle + 1}: ${p}`));
      operations += workload.history.length;
      acked += report.acked;
      unknown += report.unknown;
      failed += report.failed;
      appendsReplaced += report.appendsReplaced;
      log(`cycle ${cycle + 1}: ${workload.history.length} ops, converged ${convergenceMs[convergenceMs.length - 1]} ms after the last heal, ${report.problems.length} problems`);
    }
  } finally {
    clearInterval(sampler);
  }
  return { operations, acked, unknown, failed, faults, convergenceMs, problems, crashes: [...cluster.crashes], appendsReplaced, rssPeakBytes: rssPeak };
}

async function inject(cluster: FaultCluster, opts: ScenarioOptions, kind: FaultKind, target: number): Promise<void> {
  const hold = (): Promise<void> => new Promise((r) => setTimeout(r, opts.holdMs));
  switch (kind) {
    case 'kill':
      await cluster.kill(target);
      await hold();
      await cluster.startNode(target);
      return;
    case 'broker':
      if (opts.broker === 'mosquitto') {
        await cluster.restartBroker(opts.holdMs);
      } else {
        await cluster.kill(0);
        await hold();
        await cluster.startNode(0);
      }
      return;
    case 'broker-partition':
      cluster.brokerLink(target, false);
      await hold();
      cluster.brokerLink(target, true);
      return;
    case 'peer-partition':
      cluster.peerLinks(target, false);
      await hold();
      cluster.peerLinks(target, true);
      return;
    case 'disk-full':
      cluster.fillDisk(true);
      await hold();
      cluster.fillDisk(false);
      return;
    case 'slow-client':
      await slowClient(cluster.nodes[target]?.port as number, opts.holdMs);
      return;
  }
}

/**
 * A client that stores a 1 MiB value, then asks for it a thousand times and never reads a reply,
 * for `ms`; then goes away. The node must not build all those replies (RSS is sampled meanwhile).
 */
async function slowClient(port: number, ms: number): Promise<void> {
  const socket = connect({ port, host: '127.0.0.1' });
  socket.on('error', () => {});
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write(`SET slow-client:big ${'x'.repeat(1024 * 1024 - 64)}\r\n`);
  await new Promise((r) => setTimeout(r, 200));
  socket.pause();
  socket.write('GET slow-client:big\r\n'.repeat(1000));
  await new Promise((r) => setTimeout(r, ms));
  socket.destroy();
}

/** Polls every node until they all hold the same; their states. */
async function convergedStates(ports: readonly number[], ns: string): Promise<NodeState[]> {
  const deadline = Date.now() + CONVERGENCE_TIMEOUT_MS;
  for (;;) {
    // A node busy catching up (or a loaded machine) may be slow to answer: ask again.
    const states = await Promise.all(ports.map((p) => readState(p, ns))).catch((err: unknown) => {
      if (Date.now() > deadline) throw err;
      return undefined;
    });
    if (states !== undefined && converged(states)) return states;
    if (Date.now() > deadline) throw new Error(`no convergence within ${CONVERGENCE_TIMEOUT_MS} ms: ${JSON.stringify(states)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The soak's summary as a table. */
export function summaryTable(s: ScenarioSummary): string {
  const sorted = [...s.convergenceMs].sort((a, b) => a - b);
  const p50 = sorted[Math.floor(sorted.length / 2)] ?? 0;
  const rows: [string, string][] = [
    ['operations', `${s.operations} (acknowledged ${s.acked}, no reply ${s.unknown}, refused with ERROR ${s.failed})`],
    ['faults', Object.entries(s.faults).map(([k, n]) => `${k} ${n}`).join(', ')],
    ['convergence after the last heal', `p50 ${p50} ms, max ${sorted[sorted.length - 1] ?? 0} ms (${sorted.length} cycles)`],
    ['lost or wrong (must be 0)', String(s.problems.length)],
    ['crashes (must be 0)', String(s.crashes.length)],
    ['appends replaced by concurrent writes', String(s.appendsReplaced)],
    ['RSS peak of a node', `${(s.rssPeakBytes / 1024 / 1024).toFixed(0)} MiB${s.faults['slow-client'] ? ' (with a slow client asking for 1,000 replies of 1 MiB)' : ''}`],
  ];
  return rows.map(([k, v]) => `| ${k} | ${v} |`).join('\n');
}
