import { appendFileSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createClient, MerkleKVError, ReplyError, type MerkleKVClient } from '../client/index.js';
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

/** `merkle-kv cli GET k`: one request, its reply on stdout; the exit code says how it went. */
export async function runOnce(opts: ClientOptions, words: readonly string[]): Promise<number> {
  const client = await openSession(opts);
  if (typeof client === 'number') return client;
  try {
    const line = words.join(' ');
    const progress = /^sync\s/i.test(line) ? await watchSync(opts) : undefined;
    const reply = await client.command(line).finally(() => progress?.stop());
    print(reply, opts.raw);
    return isError(reply) ? EXIT_ERROR_REPLY : EXIT_OK;
  } catch (err) {
    process.stderr.write(`merkle-kv cli: ${(err as Error).message}\n`);
    return EXIT_NO_CONNECTION;
  } finally {
    await client.close();
  }
}

/**
 * `merkle-kv cli`: a prompt with history on a terminal (like redis-cli); from a pipe, one request per
 * line of stdin, replies on stdout, exit 1 if any was an ERROR.
 */
export async function runInteractive(opts: ClientOptions): Promise<number> {
  const client = await openSession(opts);
  if (typeof client === 'number') return client;
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
        const reply = await client.command(line);
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
  await client.close();
  return lost ? EXIT_NO_CONNECTION : sawError ? EXIT_ERROR_REPLY : EXIT_OK;
}

/** How often a running SYNC's progress is asked for and shown. */
const PROGRESS_EVERY_MS = 500;

/**
 * While a SYNC runs: asks the node for its stream figures (`STATS antientropy`, on a second connection)
 * twice a second and shows them on stderr while a stream fills the node (a new node, or SYNC --full).
 */
async function watchSync(opts: ClientOptions): Promise<{ stop: () => void }> {
  const client = await openSession(opts);
  if (typeof client === 'number') return { stop: () => {} };
  let shown = false;
  const timer = setInterval(() => {
    client.stats('antientropy').then(
      (f) => {
        if (f.anti_entropy_streams_active === '0') return;
        shown = true;
        const mb = (Number(f.anti_entropy_stream_running_bytes) / 1e6).toFixed(1);
        process.stderr.write(`\rsync: ${f.anti_entropy_stream_percent}% ${f.anti_entropy_stream_running_keys} keys ${mb} MB ${f.anti_entropy_stream_keys_per_second} keys/s  `);
      },
      () => clearInterval(timer),
    );
  }, PROGRESS_EVERY_MS);
  return {
    stop: () => {
      clearInterval(timer);
      if (shown) process.stderr.write('\n');
      // A poll still waiting for its reply is not worth waiting for.
      void client.disconnect();
    },
  };
}

/**
 * Connects and authenticates with the client library (src/client): no request timeout (a SYNC runs as
 * long as it runs) and no reconnection (a lost connection ends the session). An exit code instead when
 * either fails (said on stderr).
 */
async function openSession(opts: ClientOptions): Promise<MerkleKVClient | number> {
  try {
    const client = createClient({
      host: opts.host,
      port: opts.port,
      // --user alone asks for nothing: AUTH needs a password.
      ...(opts.password === undefined ? {} : { user: opts.user, password: opts.password }),
      tls: opts.tls ? (opts.cacert === undefined ? true : { ca: readFileSync(opts.cacert) }) : false,
      timeout: 0,
      reconnect: false,
    });
    await client.connect();
    return client;
  } catch (err) {
    const message = (err as Error).message;
    if (err instanceof ReplyError) process.stderr.write(`merkle-kv cli: AUTH refused: ERROR ${message}\n`);
    // The library's ConnectionError names the address already; ArgumentError: a password of two words.
    else if (err instanceof MerkleKVError) process.stderr.write(`merkle-kv cli: ${message}\n`);
    else process.stderr.write(`merkle-kv cli: cannot connect to ${opts.host}:${opts.port}: ${message}\n`);
    return EXIT_NO_CONNECTION;
  }
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
