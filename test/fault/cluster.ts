import { join } from 'node:path';
import { onTestFinished } from 'vitest';
import { tempDir } from '../helpers.js';
import { rssOf, spawnNode, type NodeProcess } from '../process.js';
import { freePort, waitFor } from '../replication/cluster.js';
import { startMosquitto, type Mosquitto } from '../replication/mosquitto.js';
import { SmallDisk } from './mount.js';
import { Proxy } from './proxy.js';

/**
 * A real cluster for fault injection: node processes, each with its own data directory, reaching the
 * broker through a proxy of its own and its peers (anti-entropy) through a proxy per pair, so a test can
 * kill and restart nodes and the broker, and cut and heal any node's links.
 *
 * With `broker: 'embedded'`, node 0 runs Aedes (and connects to it directly): killing node 0 kills the
 * broker too.
 */
export interface FaultClusterOptions {
  readonly nodes: number;
  readonly broker: 'mosquitto' | 'embedded';
  readonly antiEntropySeconds: number;
  /** Wall-clock skew (ms) per node index, through MERKLEKV_TEST_CLOCK_SKEW_MS. */
  readonly skewMs?: Readonly<Record<number, number>>;
  /** Extra MERKLE_KV_* settings for every node. */
  readonly env?: Readonly<Record<string, string>>;
  /** This node's data directory is on a small file system (a tmpfs) that `fillDisk` fills. */
  readonly smallDisk?: number;
}

export interface FaultNode {
  readonly index: number;
  readonly id: string;
  readonly port: number;
  readonly dir: string;
  proc: NodeProcess | undefined;
  /** Kills (SIGKILL) done to it: their exits are expected. */
  kills: number;
}

export class FaultCluster {
  readonly nodes: FaultNode[] = [];
  private readonly brokerProxies: Proxy[] = [];
  /** peerProxies[i][j]: node i's way to node j's client port. */
  private readonly peerProxies: Proxy[][] = [];
  private mosquitto: Mosquitto | undefined;
  private disk: SmallDisk | undefined;
  private brokerPort = 0;
  /** Exits nobody asked for (a crash): the checks fail on any. */
  readonly crashes: string[] = [];

  private constructor(private readonly opts: FaultClusterOptions) {}

  static async start(opts: FaultClusterOptions): Promise<FaultCluster> {
    const c = new FaultCluster(opts);
    try {
      await c.launch();
    } finally {
      // Registered after launch's temporary directories: the hooks run last first, so the nodes are
      // gone and the small disk unmounted before those directories are removed.
      onTestFinished(() => c.close());
    }
    return c;
  }

  private async launch(): Promise<void> {
    const n = this.opts.nodes;
    if (this.opts.smallDisk !== undefined) this.disk = new SmallDisk(join(tempDir(), 'small-disk'), 96);
    for (let i = 0; i < n; i++) {
      const base = i === this.opts.smallDisk && this.disk !== undefined ? this.disk.path : tempDir();
      this.nodes.push({ index: i, id: `node-${i + 1}`, port: await freePort(), dir: join(base, `node-${i + 1}`), proc: undefined, kills: 0 });
    }
    if (this.opts.broker === 'mosquitto') {
      this.mosquitto = await startMosquitto();
      this.brokerPort = this.mosquitto.port;
    } else {
      this.brokerPort = await freePort();
    }
    for (let i = 0; i < n; i++) {
      this.brokerProxies.push(await Proxy.start(this.brokerPort));
      const row: Proxy[] = [];
      for (let j = 0; j < n; j++) row.push(await Proxy.start((this.nodes[j] as FaultNode).port));
      this.peerProxies.push(row);
    }
    // Node 0 first: with the embedded broker, the others connect to it.
    for (let i = 0; i < n; i++) await this.startNode(i);
  }

  private env(i: number): Record<string, string> {
    const embeddedHere = this.opts.broker === 'embedded' && i === 0;
    const peers = this.nodes.filter((m) => m.index !== i).map((m) => `127.0.0.1:${(this.peerProxies[i]?.[m.index] as Proxy).port}`);
    const skew = this.opts.skewMs?.[i];
    return {
      MERKLE_KV_MQTT_ENABLED: 'true',
      // The node hosting the embedded broker talks to it directly; everyone else through its proxy.
      MERKLE_KV_MQTT_BROKER_ADDRESS: `mqtt://127.0.0.1:${(this.brokerProxies[i] as Proxy).port}`,
      MERKLE_KV_MQTT_KEEP_ALIVE: '2',
      ...(embeddedHere ? { MERKLE_KV_MQTT_EMBEDDED_ENABLED: 'true', MERKLE_KV_MQTT_EMBEDDED_PORT: String(this.brokerPort) } : {}),
      MERKLE_KV_ANTI_ENTROPY_PEER_LIST: peers.join(','),
      // Peers through their proxies only, so that a cut link isolates a node (not at the addresses the broker names).
      MERKLE_KV_ANTI_ENTROPY_DISCOVER_PEERS: 'false',
      MERKLE_KV_ANTI_ENTROPY_INTERVAL_SECONDS: String(this.opts.antiEntropySeconds),
      ...(skew === undefined ? {} : { MERKLEKV_TEST_CLOCK_SKEW_MS: String(skew) }),
      ...this.opts.env,
    };
  }

  async startNode(i: number): Promise<void> {
    const m = this.nodes[i] as FaultNode;
    const proc = await spawnNode(['--node-id', m.id, '--data-dir', m.dir, '--port', String(m.port)], { env: this.env(i) });
    m.proc = proc;
    const kills = m.kills;
    void proc.exited.then((code) => {
      if (m.kills === kills && m.proc === proc) this.crashes.push(`${m.id} exited (${code}): ${proc.stderr().slice(-2000)}`);
    });
  }

  /** kill -9, as a crash would. */
  async kill(i: number): Promise<void> {
    const m = this.nodes[i] as FaultNode;
    const proc = m.proc;
    if (proc === undefined) return;
    m.kills++;
    proc.child.kill('SIGKILL');
    await proc.exited;
    m.proc = undefined;
  }

  async restart(i: number): Promise<void> {
    await this.kill(i);
    await this.startNode(i);
  }

  isUp(i: number): boolean {
    return this.nodes[i]?.proc !== undefined;
  }

  /** Mosquitto only: kills the broker (SIGKILL) and starts it again on the same port and persistence. */
  async restartBroker(downMs: number): Promise<void> {
    if (this.mosquitto === undefined) throw new Error('restartBroker: the embedded broker restarts with node 0');
    await this.mosquitto.stop(true);
    await new Promise((r) => setTimeout(r, downMs));
    await this.mosquitto.restart();
  }

  /** Cuts (or heals) node i's link to the broker. */
  brokerLink(i: number, up: boolean): void {
    const p = this.brokerProxies[i] as Proxy;
    if (up) p.heal();
    else p.cut();
  }

  /** Cuts (or heals) anti-entropy both ways between node i and every other node. */
  peerLinks(i: number, up: boolean): void {
    for (let j = 0; j < this.nodes.length; j++) {
      if (j === i) continue;
      for (const p of [this.peerProxies[i]?.[j], this.peerProxies[j]?.[i]] as Proxy[]) {
        if (up) p.heal();
        else p.cut();
      }
    }
  }

  /** Fills (or frees) the small disk under node `smallDisk`. */
  fillDisk(full: boolean): void {
    if (this.disk === undefined) throw new Error('no small disk in this cluster');
    if (full) this.disk.fill();
    else this.disk.free();
  }

  healAll(): void {
    this.disk?.free();
    for (let i = 0; i < this.nodes.length; i++) {
      this.brokerLink(i, true);
      this.peerLinks(i, true);
    }
  }

  /** Resident memory of node i (bytes), from /proc; 0 if it is not running. */
  rss(i: number): number {
    const pid = this.nodes[i]?.proc?.child.pid;
    return pid === undefined ? 0 : rssOf(pid);
  }

  async close(): Promise<void> {
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const m = this.nodes[i] as FaultNode;
      m.kills++;
      m.proc?.child.kill('SIGKILL');
    }
    for (const p of [...this.brokerProxies, ...this.peerProxies.flat()]) await p.close();
    await Promise.all(this.nodes.flatMap((m) => (m.proc === undefined ? [] : [m.proc.exited])));
    this.disk?.unmount();
  }

  /** Waits until every node answers on its client port. */
  async ready(): Promise<void> {
    await waitFor('every node up', () => this.nodes.every((m) => m.proc !== undefined), 20_000);
  }
}
