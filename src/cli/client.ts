import { appendFileSync, readFileSync } from 'node:fs';
import { connect as connectTcp, type Socket } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { connect as connectTls } from 'node:tls';
import { ReplyReader } from '../protocol/replies.js';
import { format } from './format.js';

export interface ClientOptions {
  readonly host: string;
  readonly port: number;
  readonly user?: string | undefined;
  readonly password?: string | undefined;
  readonly tls: boolean;
  /** PEM CA bundle file for --tls (the system's roots when absent). */
  readonly cacert?: string | undefined;
  /** Print the protocol's lines unchanged instead of readable replies. */
  readonly raw: boolean;
  /** Where the interactive prompt keeps its history (none when empty). */
  readonly history: string;
}

/** Exit codes: every reply fine; some reply was ERROR; no connection (or AUTH refused). */
export const EXIT_OK = 0;
export const EXIT_ERROR_REPLY = 1;
export const EXIT_NO_CONNECTION = 2;

export const DEFAULT_HISTORY = join(homedir(), '.merkle_kv_history');
const HISTORY_SIZE = 1000;

/** One connection and its replies, request by request. */
class Session {
  private readonly reader = new ReplyReader();
  private readonly waiting: { resolve: (reply: string[]) => void; reject: (err: Error) => void }[] = [];
  private failure: Error | undefined;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      try {
        for (const reply of this.reader.push(chunk)) this.waiting.shift()?.resolve(reply);
      } catch (err) {
        this.fail(err as Error);
        socket.destroy();
      }
    });
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('connection closed by the server')));
  }

  static async open(opts: ClientOptions): Promise<Session> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s: Socket = opts.tls
        ? connectTls({ host: opts.host, port: opts.port, ...(opts.cacert ? { ca: readFileSync(opts.cacert) } : {}) }, () => resolve(s))
        : connectTcp({ host: opts.host, port: opts.port }, () => resolve(s));
      s.once('error', reject);
    });
    socket.setNoDelay(true);
    return new Session(socket);
  }

  /** Sends one request line; resolves with its reply's lines. */
  call(line: string): Promise<string[]> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.reader.expect(line);
      this.waiting.push({ resolve, reject });
      this.socket.write(`${line}\r\n`);
    });
  }

  private fail(err: Error): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    for (const w of this.waiting.splice(0)) w.reject(err);
  }

  close(): void {
    this.socket.end();
  }
}

/** `merkle-kv cli GET k`: one request, its reply on stdout; the exit code says how it went. */
export async function runOnce(opts: ClientOptions, words: readonly string[]): Promise<number> {
  const session = await openSession(opts);
  if (typeof session === 'number') return session;
  try {
    const line = words.join(' ');
    const progress = /^sync\s/i.test(line) ? await watchSync(opts) : undefined;
    const reply = await session.call(line).finally(() => progress?.stop());
    print(reply, opts.raw);
    return isError(reply) ? EXIT_ERROR_REPLY : EXIT_OK;
  } catch (err) {
    process.stderr.write(`merkle-kv cli: ${(err as Error).message}\n`);
    return EXIT_NO_CONNECTION;
  } finally {
    session.close();
  }
}

/**
 * `merkle-kv cli`: a prompt with history on a terminal (like redis-cli); from a pipe, one request per
 * line of stdin, replies on stdout, exit 1 if any was an ERROR.
 */
export async function runInteractive(opts: ClientOptions): Promise<number> {
  const session = await openSession(opts);
  if (typeof session === 'number') return session;
  const terminal = process.stdin.isTTY === true && process.stdout.isTTY === true;
  const history = terminal && opts.history !== '' ? loadHistory(opts.history) : [];
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal, history, historySize: HISTORY_SIZE });
  const prompt = `${opts.host}:${opts.port}> `;
  rl.setPrompt(prompt);
  let sawError = false;
  let lost = false;
  if (terminal) rl.prompt();
  for await (const input of rl) {
    const line = input.trim();
    if (line !== '') {
      if (/^(quit|exit)$/i.test(line)) break;
      // Like redis-cli, AUTH (and its password) stays out of the history file.
      if (terminal && opts.history !== '' && !/^auth\b/i.test(line)) saveHistory(opts.history, line);
      try {
        const reply = await session.call(line);
        sawError ||= isError(reply);
        print(reply, opts.raw);
      } catch (err) {
        process.stderr.write(`merkle-kv cli: ${(err as Error).message}\n`);
        lost = true;
        break;
      }
    }
    if (terminal) rl.prompt();
  }
  rl.close();
  session.close();
  return lost ? EXIT_NO_CONNECTION : sawError ? EXIT_ERROR_REPLY : EXIT_OK;
}

/** How often a running SYNC's progress is asked for and shown. */
const PROGRESS_EVERY_MS = 500;

/**
 * While a SYNC runs: asks the node for its stream figures (`STATS antientropy`, on a second connection)
 * twice a second and shows them on stderr while a stream fills the node (a new node, or SYNC --full).
 */
async function watchSync(opts: ClientOptions): Promise<{ stop: () => void }> {
  const session = await openSession(opts);
  if (typeof session === 'number') return { stop: () => {} };
  let shown = false;
  const timer = setInterval(() => {
    session.call('STATS antientropy').then(
      (reply) => {
        const f = new Map(reply.map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1)]));
        if (f.get('anti_entropy_streams_active') === '0') return;
        shown = true;
        const mb = (Number(f.get('anti_entropy_stream_running_bytes')) / 1e6).toFixed(1);
        process.stderr.write(`\rsync: ${f.get('anti_entropy_stream_percent')}% ${f.get('anti_entropy_stream_running_keys')} keys ${mb} MB ${f.get('anti_entropy_stream_keys_per_second')} keys/s  `);
      },
      () => clearInterval(timer),
    );
  }, PROGRESS_EVERY_MS);
  return {
    stop: () => {
      clearInterval(timer);
      if (shown) process.stderr.write('\n');
      session.close();
    },
  };
}

/** Connects and authenticates; an exit code instead when either fails (said on stderr). */
async function openSession(opts: ClientOptions): Promise<Session | number> {
  let session: Session;
  try {
    session = await Session.open(opts);
  } catch (err) {
    process.stderr.write(`merkle-kv cli: cannot connect to ${opts.host}:${opts.port}: ${(err as Error).message}\n`);
    return EXIT_NO_CONNECTION;
  }
  if (opts.password === undefined) return session;
  try {
    const reply = await session.call(opts.user === undefined ? `AUTH ${opts.password}` : `AUTH ${opts.user} ${opts.password}`);
    if (reply[0] === 'OK') return session;
    process.stderr.write(`merkle-kv cli: AUTH refused: ${reply[0] ?? ''}\n`);
  } catch (err) {
    process.stderr.write(`merkle-kv cli: ${(err as Error).message}\n`);
  }
  session.close();
  return EXIT_NO_CONNECTION;
}

function isError(reply: readonly string[]): boolean {
  return (reply[0] ?? '').startsWith('ERROR');
}

function print(reply: readonly string[], raw: boolean): void {
  process.stdout.write(`${(raw ? reply : format(reply)).join('\n')}\n`);
}

function loadHistory(file: string): string[] {
  try {
    // readline wants the newest first.
    return readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').slice(-HISTORY_SIZE).reverse();
  } catch {
    return [];
  }
}

function saveHistory(file: string, line: string): void {
  try {
    appendFileSync(file, `${line}\n`, { mode: 0o600 });
  } catch {
    // A history that cannot be written is not worth stopping for.
  }
}
