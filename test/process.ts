import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { onTestFinished } from 'vitest';

export const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
if (!existsSync(CLI)) throw new Error('dist/cli.js is missing: run `npm run build` (npm test does)');

export interface NodeProcess {
  readonly child: ChildProcess;
  readonly port: number;
  /** Everything read from stderr so far. */
  readonly stderr: () => string;
  /** Resolves with the exit code (or the signal's name). */
  readonly exited: Promise<number | string>;
}

/** Runs the CLI to completion (--help, --version, start-up errors, `cli`), `input` on its stdin. */
export async function runCli(args: string[], env: Record<string, string> = {}, input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...cleanEnv(), ...env }, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  child.stdin?.end(input);
  onTestFinished(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  // 'close': stdout and stderr read to their ends.
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return { code, stdout, stderr };
}

/**
 * Starts a node process on port 0 and learns its port from the 'node listening' log line.
 * With `stopReadingStderr`, stderr is left unread after that line, like a pipe nobody drains.
 */
export async function spawnNode(
  args: string[],
  opts: { env?: Record<string, string>; stopReadingStderr?: boolean } = {},
): Promise<NodeProcess> {
  const child = spawn(process.execPath, [CLI, '--port', '0', ...args], {
    env: { ...cleanEnv(), ...opts.env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  // 'close' also waits for stderr to be read to its end; with an unread pipe only 'exit' comes.
  const exited = new Promise<number | string>((resolve) =>
    child.on(opts.stopReadingStderr === true ? 'exit' : 'close', (code: number | null, signal: string | null) =>
      resolve(code ?? signal ?? 'unknown'),
    ),
  );
  let text = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node did not start: ${text}`)), 10_000);
    const onData = (b: Buffer): void => {
      text += b.toString();
      for (const line of text.split('\n')) {
        // JSON: {"msg":"node listening",...,"port":N}; text: `INFO: node listening {...,"port":N}`
        const port = /node listening.*"port":(\d+)|"port":(\d+).*"msg":"node listening"/.exec(line);
        if (port === null) continue;
        clearTimeout(timer);
        if (opts.stopReadingStderr === true) {
          child.stderr?.off('data', onData);
          child.stderr?.pause();
        }
        resolve(Number(port[1] ?? port[2]));
        return;
      }
    };
    child.stderr?.on('data', onData);
    void exited.then((code) => reject(new Error(`node exited (${code}) before listening: ${text}`)));
  });
  return { child, port, stderr: () => text, exited };
}

/** The parent's environment without MERKLE_KV_* settings, so tests see only what they set. */
function cleanEnv(): Record<string, string> {
  // Standalone unless a test says otherwise: no broker is listening on the default port.
  const env: Record<string, string> = { MERKLE_KV_MQTT_ENABLED: 'false' };
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MERKLE_KV_') && v !== undefined) env[k] = v;
  return env;
}

/** The fields of /proc/<pid>/stat after the command name (which may hold spaces): [0] the state, [19] the start time. */
export function procStat(pid: number): string[] {
  const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}

/** Resident memory of process `pid` in bytes, from /proc; 0 if it is gone. */
export function rssOf(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}
