import { connect, type Socket } from 'node:net';

/*
 * The fault suite's workload: concurrent clients writing to random nodes over a small key space, every
 * request recorded with its start and end time and how it ended: `ok` (acknowledged), `fail` (an ERROR
 * reply: not applied) or `unknown` (no reply: the node died or the link was cut; it may have applied).
 *
 * Keys: plain values p0..p7 (SET, DEL, SETEX, MSET), appends a0..a1 (APPEND), counters c0..c3 (INC, DEC),
 * sets s0..s1 (SADD, SREM). Each set member belongs to one client, which always asks the same node (its
 * home), so its remove has seen its own add there and "the last acknowledged op wins" is exact for it.
 */

export type Outcome = 'ok' | 'fail' | 'unknown';

export interface Op {
  readonly client: number;
  readonly node: number;
  readonly kind: 'set' | 'del' | 'append' | 'inc' | 'sadd' | 'srem';
  readonly key: string;
  /** set/append: the unique token written; inc: the signed delta; sadd/srem: the member. */
  readonly arg: string;
  readonly start: number;
  end: number;
  outcome: Outcome;
}

export const PLAIN_KEYS = Array.from({ length: 8 }, (_, i) => `p${i}`);
export const APPEND_KEYS = ['a0', 'a1'];
export const COUNTER_KEYS = Array.from({ length: 4 }, (_, i) => `c${i}`);
export const SET_KEYS = ['s0', 's1'];
const MEMBERS_PER_CLIENT = 4;
const REQUEST_TIMEOUT_MS = 3000;

/** One connection that answers one request at a time; undefined when no reply came. */
class Conn {
  private buf = '';
  private waiter: ((line: string | undefined) => void) | undefined;
  private dead = false;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (s: string) => {
      this.buf += s;
      this.deliver();
    });
    const die = (): void => {
      this.dead = true;
      this.waiter?.(undefined);
      this.waiter = undefined;
    };
    socket.on('close', die);
    socket.on('error', die);
  }

  static open(port: number): Promise<Conn | undefined> {
    return new Promise((resolve) => {
      const s = connect({ port, host: '127.0.0.1', noDelay: true });
      const timer = setTimeout(() => (s.destroy(), resolve(undefined)), 3000);
      s.once('connect', () => (clearTimeout(timer), resolve(new Conn(s))));
      s.once('error', () => (clearTimeout(timer), resolve(undefined)));
    });
  }

  get alive(): boolean {
    return !this.dead;
  }

  /** The reply's lines: `count` lines, or for SMEMBERS the header and its members. */
  request(line: string, lines = 1): Promise<string[] | undefined> {
    if (this.dead) return Promise.resolve(undefined);
    this.buf = '';
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        this.socket.destroy();
        resolve(undefined);
      }, REQUEST_TIMEOUT_MS);
      const got: string[] = [];
      let want = lines;
      this.waiter = (l) => {
        if (l === undefined) {
          clearTimeout(timer);
          return resolve(undefined);
        }
        got.push(l);
        const members = /^MEMBERS (\d+)$/.exec(l);
        if (got.length === 1 && members !== null) want = 1 + Number(members[1]);
        if (got.length < want) return;
        clearTimeout(timer);
        this.waiter = undefined;
        resolve(got);
      };
      this.socket.write(`${line}\r\n`);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private deliver(): void {
    for (let nl = this.buf.indexOf('\r\n'); nl !== -1 && this.waiter !== undefined; nl = this.buf.indexOf('\r\n')) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 2);
      this.waiter(line);
    }
  }
}

export interface WorkloadOptions {
  readonly clients: number;
  /** Client ports of the nodes, by index. */
  readonly ports: readonly number[];
  /** Whether node i is up (a client does not wait for a dead node's connect to fail). */
  readonly isUp: (i: number) => boolean;
  readonly seed?: number;
  /** Prefixed to every key and value on the wire, so runs on one cluster do not meet (ops record keys without it). */
  readonly ns?: string;
}

/** Runs until `stop()`; the history is every request made. */
export class Workload {
  readonly history: Op[] = [];
  private stopped = false;
  private readonly runs: Promise<void>[] = [];
  private rand: () => number;

  constructor(private readonly opts: WorkloadOptions) {
    let s = opts.seed ?? 1;
    // A small LCG: the run is reproducible given the seed and the faults' timing.
    this.rand = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  }

  start(): void {
    for (let c = 0; c < this.opts.clients; c++) this.runs.push(this.client(c));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.runs);
  }

  /** Members owned by client c. */
  static membersOf(c: number): string[] {
    return Array.from({ length: MEMBERS_PER_CLIENT }, (_, j) => `m${c}-${j}`);
  }

  private pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rand() * xs.length)] as T;
  }

  private async client(c: number): Promise<void> {
    const conns = new Map<number, Conn>();
    const home = c % this.opts.ports.length;
    let seq = 0;
    while (!this.stopped) {
      const setOp = this.rand() < 0.25;
      const node = setOp ? home : Math.floor(this.rand() * this.opts.ports.length);
      if (!this.opts.isUp(node)) {
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      let conn = conns.get(node);
      if (conn === undefined || !conn.alive) {
        conn = await Conn.open(this.opts.ports[node] as number);
        if (conn === undefined) {
          await new Promise((r) => setTimeout(r, 50));
          continue;
        }
        conns.set(node, conn);
      }
      const token = `v${this.opts.ns ?? ''}${c}-${seq++}`;
      const [line, ops] = this.next(c, node, token, setOp);
      const start = Date.now();
      for (const op of ops) this.history.push(op);
      const reply = await conn.request(this.onWire(line));
      const end = Date.now();
      const outcome: Outcome = reply === undefined ? 'unknown' : reply[0]?.startsWith('ERROR') ? 'fail' : 'ok';
      for (const op of ops) Object.assign(op, { start, end, outcome });
    }
    for (const conn of conns.values()) conn.close();
  }

  /** The request with the namespace put before each key (keys are the words that name one). */
  private onWire(line: string): string {
    const ns = this.opts.ns ?? '';
    if (ns === '') return line;
    return line.replace(/(?<=^| )([pacs]\d+)(?= |$)/g, `${ns}$1`);
  }

  private next(c: number, node: number, token: string, setOp: boolean): [string, Op[]] {
    const op = (kind: Op['kind'], key: string, arg: string): Op => ({ client: c, node, kind, key, arg, start: 0, end: 0, outcome: 'unknown' });
    if (setOp) {
      const key = this.pick(SET_KEYS);
      const member = this.pick(Workload.membersOf(c));
      const add = this.rand() < 0.6;
      return [`${add ? 'SADD' : 'SREM'} ${key} ${member}`, [op(add ? 'sadd' : 'srem', key, member)]];
    }
    const r = this.rand();
    if (r < 0.3) {
      const key = this.pick(PLAIN_KEYS);
      return [`SET ${key} ${token}`, [op('set', key, token)]];
    }
    if (r < 0.4) {
      const key = this.pick(PLAIN_KEYS);
      return [`SETEX ${key} 3600 ${token}`, [op('set', key, token)]];
    }
    if (r < 0.5) {
      const [k1, k2] = [this.pick(PLAIN_KEYS), this.pick(PLAIN_KEYS)];
      if (k1 === k2) return [`SET ${k1} ${token}`, [op('set', k1, token)]];
      return [`MSET ${k1} ${token}a ${k2} ${token}b`, [op('set', k1, `${token}a`), op('set', k2, `${token}b`)]];
    }
    if (r < 0.6) {
      const key = this.pick(PLAIN_KEYS);
      return [`DEL ${key}`, [op('del', key, '')]];
    }
    if (r < 0.7) {
      const key = this.pick(APPEND_KEYS);
      return [`APPEND ${key} ${token}.`, [op('append', key, `${token}.`)]];
    }
    const key = this.pick(COUNTER_KEYS);
    const n = 1 + Math.floor(this.rand() * 5);
    const up = this.rand() < 0.7;
    return [`${up ? 'INC' : 'DEC'} ${key} ${n}`, [op('inc', key, String(up ? n : -n))]];
  }
}

/** What one node holds of the workload's keys, read over its client port. */
export interface NodeState {
  readonly root: string;
  readonly values: Record<string, string | undefined>;
  readonly sets: Record<string, string[]>;
}

export async function readState(port: number, ns = ''): Promise<NodeState> {
  const conn = await Conn.open(port);
  if (conn === undefined) throw new Error(`cannot connect to 127.0.0.1:${port}`);
  try {
    const ask = async (line: string): Promise<string[]> => {
      const r = await conn.request(line);
      if (r === undefined) throw new Error(`no reply to ${line} from ${port}`);
      return r;
    };
    const values: Record<string, string | undefined> = {};
    for (const k of [...PLAIN_KEYS, ...APPEND_KEYS, ...COUNTER_KEYS]) {
      const [r] = await ask(`GET ${ns}${k}`);
      values[k] = r === 'NOT_FOUND' ? undefined : r?.replace(/^VALUE /, '');
    }
    const sets: Record<string, string[]> = {};
    for (const k of SET_KEYS) sets[k] = (await ask(`SMEMBERS ${ns}${k}`)).slice(1).sort();
    const [root] = await ask('HASH');
    return { root: root ?? '', values, sets };
  } finally {
    conn.close();
  }
}
