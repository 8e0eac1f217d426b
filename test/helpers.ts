import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { connect as connectTls, type ConnectionOptions } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { onTestFinished } from 'vitest';
import { answerChallenge, PeerProof } from '../src/antientropy/handshake.js';
import { AE_PROTOCOL_VERSION } from '../src/antientropy/requests.js';
import { loadConfig } from '../src/config/load.js';
import type { Config } from '../src/config/schema.js';
import { startNode, type RunningNode } from '../src/node.js';
import type { Version } from '../src/hlc.js';
import { plainState } from '../src/store/state.js';
import type { Ack, Store } from '../src/store/index.js';

export const silent = pino({ level: 'silent' });

/** Applies a plain value (undefined: a tombstone) made elsewhere, as replication would. */
export function applyPlain(store: Store, key: Buffer, version: Version, value: Buffer | undefined): Ack | undefined {
  return store.applyRemote(key, plainState(version, value));
}

/** A temporary directory removed when the test finishes. */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'merkle-kv-test-'));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A node on 127.0.0.1 port 0 with its own data directory, stopped when the test finishes. */
export async function startTestNode(flags: Record<string, string> = {}, logger: Logger = silent): Promise<RunningNode> {
  const config: Config = loadConfig({
    flags: {
      node_id: 'test-node',
      'network.bind_port': '0',
      'mqtt.enabled': 'false',
      'storage.path': join(tempDir(), 'db'),
      ...flags,
    },
  });
  const node = await startNode(config, logger);
  onTestFinished(() => node.stop());
  return node;
}

/** A line-oriented test client: send text, read whole reply lines. */
export class LineClient {
  private buffered = '';
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (s: string) => {
      this.buffered += s;
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  /** Connects to 127.0.0.1:`port`, over TLS with `tls` (rejects if the handshake fails). */
  static async connect(port: number, tls?: ConnectionOptions): Promise<LineClient> {
    const socket = tls === undefined ? connect({ port, host: '127.0.0.1', noDelay: true }) : connectTls({ ...tls, port, host: '127.0.0.1' });
    await new Promise<void>((resolve, reject) => {
      socket.once(tls === undefined ? 'connect' : 'secureConnect', resolve);
      socket.once('error', reject);
    });
    const client = new LineClient(socket);
    onTestFinished(() => {
      socket.destroy();
    });
    return client;
  }

  send(text: string | Buffer): void {
    this.socket.write(text);
  }

  /** Reads exactly `n` CRLF-terminated lines (without the CRLF). */
  async lines(n: number, timeoutMs = 5000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const parts = this.buffered.split('\r\n');
      if (parts.length - 1 >= n) {
        const out = parts.slice(0, n);
        this.buffered = parts.slice(n).join('\r\n');
        return out;
      }
      if (this.closed) throw new Error(`connection closed after ${parts.length - 1} of ${n} lines: ${this.buffered}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} lines, have: ${JSON.stringify(this.buffered)}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  /** Sends one request line and returns its one-line reply. */
  async call(line: string): Promise<string> {
    this.send(`${line}\r\n`);
    const [reply] = await this.lines(1);
    return reply as string;
  }

  /** SMEMBERS `key`: the reply's lines (`MEMBERS <n>` then the members) joined by newlines, or its ERROR line. */
  async members(key: string): Promise<string> {
    const head = await this.call(`SMEMBERS ${key}`);
    const n = /^MEMBERS (\d+)$/.exec(head)?.[1];
    return n === undefined ? head : [head, ...(await this.lines(Number(n)))].join('\n');
  }

  /**
   * Sends `word` (STATS with its section, INFO, CLIENT LIST) and returns the block up to END: the header
   * line, then the name:value lines. By default every section of STATS.
   */
  async stats(word = 'STATS all'): Promise<string[]> {
    this.send(`${word}\r\n`);
    const lines: string[] = [];
    for (let line = (await this.lines(1))[0]; line !== 'END'; line = (await this.lines(1))[0]) lines.push(line as string);
    return lines;
  }

  /**
   * Proves this connection to be an anti-entropy peer holding `secret` (antientropy/handshake.ts), so it
   * may send AE.* commands. Resolves with the server's answer to the proof.
   */
  async provePeer(secret = ''): Promise<string> {
    const proof = new PeerProof(secret);
    const cn = proof.nonce();
    const reply = await this.call(`AE.HELLO ${cn} ${AE_PROTOCOL_VERSION}`);
    let prove: string;
    try {
      prove = answerChallenge(proof, cn, reply);
    } catch {
      throw new Error('server failed its proof');
    }
    return this.call(prove);
  }

  /** Resolves when the server has closed the connection. */
  async waitClosed(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('server did not close the connection');
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  /** Whatever arrived and has not been read as lines. */
  get rest(): string {
    return this.buffered;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
